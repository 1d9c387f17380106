"""The network peer of a call relayed by this process's web gateway.

The gateway reaches the registry over loopback, so the gRPC peer of every call it relays is
the gateway itself; audit wants the browser's address. The gateway sends it in
`x-modelreg-forwarded-for` together with a secret made when this process started, which no
one outside the process knows: a caller who sets the header itself is not believed, and its
own address is recorded as always. The gateway forwards no `x-modelreg-*` header from the
browser, so a browser cannot set either.
"""

from __future__ import annotations

import hmac
import secrets

FORWARDED_FOR = "x-modelreg-forwarded-for"
FORWARDER = "x-modelreg-forwarder"

_SECRET = secrets.token_urlsafe(32)

# A peer as gRPC writes one (`ipv4:10.0.0.7:51234`, `ipv6:[::1]:51234`); longer is refused.
_MAX_PEER = 128


def forwarding_metadata(host: str, port: int | None) -> list[tuple[str, str]]:
    """What the gateway adds to a relayed call: the browser's address, gRPC-style."""
    address = f"[{host}]" if ":" in host else host
    family = "ipv6" if ":" in host else "ipv4"
    peer = f"{family}:{address}" + (f":{port}" if port else "")
    return [(FORWARDED_FOR, peer), (FORWARDER, _SECRET)]


def forwarded_peer(forwarded_for: str | None, forwarder: str | None) -> str | None:
    """The relayed caller's address when the gateway of this process sent it, else None."""
    if not forwarded_for or not forwarder or len(forwarded_for) > _MAX_PEER:
        return None
    if not hmac.compare_digest(forwarder.encode(), _SECRET.encode()):
        return None
    return forwarded_for
