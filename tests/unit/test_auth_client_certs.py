"""Client-certificate principals from a gRPC auth context, and who wins when both a token and a
certificate are present. The auth-context shape is what grpcio 1.85 really returns (checked
end to end in tests/service/common/test_authn_mtls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg_common.auth import Authenticator, hash_token
from modelreg_common.client_certs import ClientCertificates, certificate_subject
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated
from modelreg_common.settings import AuthSettings, TlsSettings, TokenEntry

VERIFIED: dict[str, list[bytes]] = {
    "transport_security_type": [b"ssl"],
    "x509_subject": [b"CN=ci-client"],
    "x509_common_name": [b"ci-client"],
    "x509_subject_alternative_name": [b"spiffe://modelreg/ci", b"ci.example"],
    "peer_uri": [b"spiffe://modelreg/ci"],
    "peer_dns": [b"ci.example"],
    "security_level": [b"TSI_PRIVACY_AND_INTEGRITY"],
}


def without(*keys: str) -> dict[str, list[bytes]]:
    return {k: v for k, v in VERIFIED.items() if k not in keys}


@pytest.mark.parametrize(
    ("context", "mode", "subject"),
    [
        (VERIFIED, "san", "spiffe://modelreg/ci"),
        (without("peer_uri"), "san", "ci.example"),
        (
            without("peer_uri", "peer_dns", "x509_subject_alternative_name"),
            "san",
            "ci-client",
        ),
        # An older gRPC without peer_uri/peer_dns: a URI-looking SAN is still preferred.
        (
            {
                **without("peer_uri", "peer_dns"),
                "x509_subject_alternative_name": [b"ci.example", b"spiffe://modelreg/ci"],
            },
            "san",
            "spiffe://modelreg/ci",
        ),
        (VERIFIED, "cn", "ci-client"),
        (VERIFIED, "off", None),
        (without("transport_security_type"), "san", None),
        ({**VERIFIED, "transport_security_type": [b"insecure"]}, "san", None),
        ({"transport_security_type": [b"ssl"]}, "san", None),
        ({}, "san", None),
    ],
)
def test_certificate_subject(
    context: dict[str, list[bytes]], mode: str, subject: str | None
) -> None:
    assert certificate_subject(context, mode) == subject  # type: ignore[arg-type]


def test_principal_is_mtls_without_groups() -> None:
    certificates = ClientCertificates("san")
    assert certificates.principal(VERIFIED) == Principal(
        subject="spiffe://modelreg/ci", method="mtls"
    )
    assert certificates.principal(None) is None


def mtls_authenticator(mode: str, principal: str = "san") -> Authenticator:
    return Authenticator.from_settings(
        AuthSettings(
            mode=mode,  # type: ignore[arg-type]
            tokens=[TokenEntry(sha256=hash_token("t0k"), principal="bob")],
        ),
        TlsSettings(
            cert_file=Path("server.pem"),
            key_file=Path("server.key"),
            client_ca_file=Path("ca.pem"),
            client_principal=principal,  # type: ignore[arg-type]
        ),
    )


async def test_bearer_token_wins_over_client_certificate() -> None:
    principal = await mtls_authenticator("token").authenticate("Bearer t0k", VERIFIED)
    assert (principal.subject, principal.method) == ("bob", "token")


async def test_bad_bearer_token_is_refused_even_with_a_valid_certificate() -> None:
    with pytest.raises(Unauthenticated, match="bearer token is not valid"):
        await mtls_authenticator("token").authenticate("Bearer nope", VERIFIED)


async def test_certificate_authenticates_without_token_in_token_mode() -> None:
    principal = await mtls_authenticator("token").authenticate(None, VERIFIED)
    assert principal == Principal(subject="spiffe://modelreg/ci", method="mtls")


async def test_certificate_wins_over_local_mode() -> None:
    authenticator = mtls_authenticator("local", principal="cn")
    assert (await authenticator.authenticate(None, VERIFIED)).subject == "ci-client"
    assert (await authenticator.authenticate(None, None)).method == "local"


async def test_client_principal_off_ignores_certificates() -> None:
    with pytest.raises(Unauthenticated, match="missing credentials"):
        await mtls_authenticator("token", principal="off").authenticate(None, VERIFIED)


async def test_certificates_are_ignored_unless_the_server_requires_them() -> None:
    # Without client_ca_file the server does not verify client certificates: never trust one.
    authenticator = Authenticator.from_settings(
        AuthSettings(mode="token"),
        TlsSettings(cert_file=Path("server.pem"), key_file=Path("server.key")),
    )
    with pytest.raises(Unauthenticated, match="missing credentials"):
        await authenticator.authenticate(None, VERIFIED)
    plain = Authenticator.from_settings(AuthSettings(mode="token"))
    with pytest.raises(Unauthenticated, match="missing credentials"):
        await plain.authenticate(None, VERIFIED)
