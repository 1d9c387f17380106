"""Who may approve: the roles the caller holds on the model, as the authorizer resolved them for
this call (grants kept by the metadata service). The requester is still never allowed to approve
their own request; that rule lives in the domain and does not depend on this port."""

from __future__ import annotations

from modelreg_common.access import Role, current_access
from modelreg_common.context import Principal, current_principal


class CallerRoles:
    async def has_role(self, principal: Principal, model: str, role: str) -> bool:
        # The access bound to the call is the caller's; asking about anyone else is a bug.
        if principal != current_principal():
            raise ValueError("roles are known only for the calling principal")
        try:
            needed = Role.parse(role or "approver")
        except KeyError:
            return False
        return current_access().role_on(model) >= needed
