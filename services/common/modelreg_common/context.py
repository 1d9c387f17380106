"""Who is calling and under which request id, for the code that runs inside one RPC.

Set by the server interceptor; read by the outbox (actor, request id) and by logs. Plain
contextvars, so domain code may read it without importing grpc.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelreg_common.access import Access


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `subject` is stable (user, service account, key id)."""

    subject: str
    groups: tuple[str, ...] = ()
    # How the caller proved who it is: local, token, api_key, jwt, mtls.
    method: str = "token"


SYSTEM = Principal(subject="system:modelreg", method="internal")


@dataclass(frozen=True)
class CallInfo:
    method: str
    request_id: str
    principal: Principal = SYSTEM
    peer: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # What the caller may do; set by the interceptor once the caller is known.
    access: Access | None = None


_current: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "modelreg_call", default=None
)


def current_call() -> CallInfo | None:
    return _current.get()


def current_principal() -> Principal:
    call = _current.get()
    return call.principal if call is not None else SYSTEM


def bind_call(call: CallInfo) -> contextvars.Token[CallInfo | None]:
    return _current.set(call)


def unbind_call(token: contextvars.Token[CallInfo | None]) -> None:
    # A stream's generator left unfinished is closed by the event loop's finalizer, in a
    # context of its own: the call's context went with its task, nothing is left to reset.
    with contextlib.suppress(ValueError):
        _current.reset(token)
