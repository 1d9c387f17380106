"""Who may approve. A placeholder until governance (roles and grants kept by the metadata
service) lands: any authenticated principal has every approver role, except the runtime's own
system principal. The requester is still never allowed to approve their own request; that rule
lives in the domain and does not depend on this port."""

from __future__ import annotations

from modelreg_common.context import Principal


class PlaceholderApproverRoles:
    async def has_role(self, principal: Principal, model: str, role: str) -> bool:
        return bool(principal.subject) and principal.method != "internal"
