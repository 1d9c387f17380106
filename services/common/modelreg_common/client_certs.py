"""The caller behind a verified TLS client certificate (mTLS).

gRPC puts the peer's certificate fields in the call's auth context only after the handshake
verified the chain against the server's client CA, e.g. (grpcio 1.85, values are lists of bytes):
`transport_security_type: [b'ssl']`, `x509_common_name: [b'ci-client']`,
`peer_uri: [b'spiffe://modelreg/ci']`, `peer_dns: [b'ci.example']`,
`x509_subject_alternative_name: [b'spiffe://modelreg/ci', b'ci.example']`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from modelreg_common.context import Principal

AuthContext = Mapping[str, Iterable[bytes]]
ClientPrincipalMode = Literal["san", "cn", "off"]


def _values(auth_context: AuthContext, key: str) -> list[str]:
    values: list[str] = []
    for raw in auth_context.get(key, ()):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if text:
            values.append(text)
    return values


def certificate_subject(auth_context: AuthContext, mode: ClientPrincipalMode) -> str | None:
    """The identity a verified client certificate carries, or None (no certificate, or off)."""
    if mode == "off" or _values(auth_context, "transport_security_type") != ["ssl"]:
        return None
    if mode == "san":
        for key in ("peer_uri", "peer_dns"):
            found = _values(auth_context, key)
            if found:
                return found[0]
        # Older gRPC lists every SAN under one key, without its type: prefer a URI-looking one.
        sans = _values(auth_context, "x509_subject_alternative_name")
        uris = [san for san in sans if "://" in san or san.startswith("spiffe:")]
        if uris or sans:
            return (uris or sans)[0]
    names = _values(auth_context, "x509_common_name")
    return names[0] if names else None


class ClientCertificates:
    """Turns a call's auth context into a `Principal(method="mtls")`.

    Only meaningful when the server requires client certificates (`tls.client_ca_file`): then
    the certificate fields in the auth context were verified by the handshake.
    """

    def __init__(self, mode: ClientPrincipalMode = "san") -> None:
        self._mode = mode

    def principal(self, auth_context: AuthContext | None) -> Principal | None:
        if not auth_context:
            return None
        subject = certificate_subject(auth_context, self._mode)
        if subject is None:
            return None
        return Principal(subject=subject, method="mtls")
