"""mTLS with real certificates made here: who a client certificate authenticates as, which
handshakes fail, and TLS on the channels a service opens to its peers."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelreg_common.auth import Authenticator, hash_token
from modelreg_common.context import Principal
from modelreg_common.settings import AuthSettings, Settings, TlsSettings
from modelreg_common.tls import peer_channel_credentials, peer_channel_options
from testkit import PROBE_SERVICE, make_settings, probe_spec

SPIFFE_ID = "spiffe://modelreg/ci"
SERVER_ID = "spiffe://modelreg/server"


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path

    def pem(self) -> tuple[bytes, bytes]:
        return self.key.read_bytes(), self.cert.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Issued
    # A server certificate naming only a service DNS name, not 127.0.0.1.
    named_server: Issued
    client: Issued
    client_cn_only: Issued
    rogue_ca: Path
    rogue_client: Issued


class _Authority:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        directory: Path,
        name: str,
        common_name: str,
        sans: Sequence[x509.GeneralName],
        usages: Sequence[x509.ObjectIdentifier],
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(directory / f"{name}.pem", directory / f"{name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, rogue = _Authority("modelreg test CA"), _Authority("rogue CA")
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    return Pki(
        ca=ca.write(directory / "ca.pem"),
        # Server certificates also carry clientAuth: a service presents its own certificate
        # to its peers.
        server=ca.issue(
            directory,
            "server",
            "modelreg-server",
            [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.UniformResourceIdentifier(SERVER_ID),
            ],
            both,
        ),
        named_server=ca.issue(
            directory, "named", "metadata", [x509.DNSName("metadata.modelreg.svc")], both
        ),
        client=ca.issue(
            directory,
            "client",
            "ci-client",
            [x509.UniformResourceIdentifier(SPIFFE_ID), x509.DNSName("ci.example")],
            client,
        ),
        client_cn_only=ca.issue(directory, "cn-only", "batch-job", [], client),
        rogue_ca=rogue.write(directory / "rogue-ca.pem"),
        rogue_client=rogue.issue(
            directory,
            "rogue",
            "ci-client",
            [x509.UniformResourceIdentifier(SPIFFE_ID)],
            client,
        ),
    )


def tls_settings(pki: Pki, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cert_file": pki.server.cert,
        "key_file": pki.server.key,
        "client_ca_file": pki.ca,
    }
    values.update(overrides)
    return values


def client_credentials(pki: Pki, client: Issued | None) -> grpc.ChannelCredentials:
    key, chain = client.pem() if client is not None else (None, None)
    return grpc.ssl_channel_credentials(pki.ca.read_bytes(), key, chain)


def whoami(channel: aio.Channel) -> aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(f"/{PROBE_SERVICE}/WhoAmI")


async def test_auth_context_of_a_real_handshake_yields_the_uri_san(pki: Pki) -> None:
    """The auth context grpcio really hands a servicer, fed to the Authenticator."""
    authenticator = Authenticator.from_settings(
        AuthSettings(mode="token"), TlsSettings(**tls_settings(pki))
    )
    seen: list[Principal] = []

    async def handler(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append(await authenticator.authenticate(None, context.auth_context()))
        return b""

    server = aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                PROBE_SERVICE, {"WhoAmI": grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    credentials = grpc.ssl_server_credentials(
        [pki.server.pem()], root_certificates=pki.ca.read_bytes(), require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        for client in (pki.client, pki.client_cn_only):
            async with aio.secure_channel(
                f"127.0.0.1:{port}", client_credentials(pki, client)
            ) as channel:
                await whoami(channel)(b"")
    finally:
        await server.stop(0)
    assert seen == [
        Principal(subject=SPIFFE_ID, method="mtls"),
        Principal(subject="batch-job", method="mtls"),
    ]


async def test_client_certificate_from_the_right_ca_calls_as_its_uri_san(
    start_server: Any, pki: Pki
) -> None:
    settings = make_settings(
        auth={"mode": "token", "admins": [f"user:{SPIFFE_ID}"]}, tls=tls_settings(pki)
    )
    server = await start_server([probe_spec()], settings=settings)
    async with aio.secure_channel(server.address, client_credentials(pki, pki.client)) as channel:
        assert await whoami(channel)(b"", timeout=10) == SPIFFE_ID.encode()


async def test_client_principal_cn_uses_the_common_name(start_server: Any, pki: Pki) -> None:
    settings = make_settings(
        auth={"mode": "token", "admins": ["user:ci-client"]},
        tls=tls_settings(pki, client_principal="cn"),
    )
    server = await start_server([probe_spec()], settings=settings)
    async with aio.secure_channel(server.address, client_credentials(pki, pki.client)) as channel:
        assert await whoami(channel)(b"", timeout=10) == b"ci-client"


async def test_bearer_token_over_mtls_wins_over_the_certificate(
    start_server: Any, pki: Pki
) -> None:
    settings = make_settings(
        auth={
            "mode": "token",
            "tokens": [{"sha256": hash_token("t0k"), "principal": "bob"}],
            "admins": ["user:bob"],
        },
        tls=tls_settings(pki),
    )
    server = await start_server([probe_spec()], settings=settings)
    async with aio.secure_channel(server.address, client_credentials(pki, pki.client)) as channel:
        reply = await whoami(channel)(b"", metadata=[("authorization", "Bearer t0k")], timeout=10)
    assert reply == b"bob"


async def test_client_principal_off_needs_a_token(start_server: Any, pki: Pki) -> None:
    settings = make_settings(auth={"mode": "token"}, tls=tls_settings(pki, client_principal="off"))
    server = await start_server([probe_spec()], settings=settings)
    async with aio.secure_channel(server.address, client_credentials(pki, pki.client)) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await whoami(channel)(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("client", ["rogue", "none"])
async def test_handshake_without_a_trusted_client_certificate_fails(
    start_server: Any, pki: Pki, client: str
) -> None:
    settings = make_settings(auth={"mode": "token"}, tls=tls_settings(pki))
    server = await start_server([probe_spec()], settings=settings)
    presented = pki.rogue_client if client == "rogue" else None
    async with aio.secure_channel(server.address, client_credentials(pki, presented)) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await whoami(channel)(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_client_cannot_call_a_tls_port(start_server: Any, pki: Pki) -> None:
    settings = make_settings(auth={"mode": "token"}, tls=tls_settings(pki))
    server = await start_server([probe_spec()], settings=settings)
    async with aio.insecure_channel(server.address) as channel:
        with pytest.raises(aio.AioRpcError) as err:
            await whoami(channel)(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def _health(
    address: str, credentials: grpc.ChannelCredentials | None, options: list[tuple[str, Any]]
) -> int:
    assert credentials is not None
    async with aio.secure_channel(address, credentials, options=options) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return int(reply.status)


async def test_peer_channel_presents_the_service_certificate(start_server: Any, pki: Pki) -> None:
    settings = make_settings(
        auth={"mode": "token", "admins": [f"user:{SERVER_ID}"]}, tls=tls_settings(pki)
    )
    server = await start_server([probe_spec()], settings=settings)
    credentials = peer_channel_credentials(settings)
    options = peer_channel_options(settings)
    assert await _health(server.address, credentials, options) == (
        health_pb2.HealthCheckResponse.SERVING
    )
    # Its own certificate is a client certificate the peer accepts, and names the service.
    assert credentials is not None
    async with aio.secure_channel(server.address, credentials, options=options) as channel:
        assert await whoami(channel)(b"", timeout=10) == SERVER_ID.encode()


async def test_peer_server_name_overrides_the_checked_name(start_server: Any, pki: Pki) -> None:
    served = make_settings(
        auth={"mode": "token"},
        tls=tls_settings(pki, cert_file=pki.named_server.cert, key_file=pki.named_server.key),
    )
    server = await start_server([probe_spec()], settings=served)
    caller = tls_settings(pki)
    plain = make_settings(tls=caller)
    with pytest.raises(aio.AioRpcError) as err:
        await _health(server.address, peer_channel_credentials(plain), peer_channel_options(plain))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    named = make_settings(tls={**caller, "peer_server_name": "metadata.modelreg.svc"})
    assert peer_channel_options(named) == [
        ("grpc.ssl_target_name_override", "metadata.modelreg.svc")
    ]
    assert await _health(
        server.address, peer_channel_credentials(named), peer_channel_options(named)
    ) == (health_pb2.HealthCheckResponse.SERVING)


async def test_peer_ca_file_is_what_peers_are_checked_against(start_server: Any, pki: Pki) -> None:
    settings = make_settings(auth={"mode": "token"}, tls=tls_settings(pki))
    server = await start_server([probe_spec()], settings=settings)
    wrong = make_settings(tls=tls_settings(pki, peer_ca_file=pki.rogue_ca))
    with pytest.raises(aio.AioRpcError) as err:
        await _health(server.address, peer_channel_credentials(wrong), [])
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_services_call_peers_in_plaintext(pki: Pki) -> None:
    assert peer_channel_credentials(make_settings()) is None
    assert peer_channel_options(make_settings(tls={"peer_server_name": "x"})) == []
    # A client of a TLS mesh port without serving TLS itself: trust the peer CA only.
    only_ca = make_settings(tls={"peer_ca_file": pki.ca})
    assert peer_channel_credentials(only_ca) is not None


def test_peer_certificate_without_key_is_a_configuration_error(pki: Pki) -> None:
    settings: Settings = make_settings(
        tls={"peer_ca_file": pki.ca, "peer_cert_file": pki.client.cert}
    )
    with pytest.raises(ValueError, match="both a certificate and a key"):
        peer_channel_credentials(settings)


async def test_all_services_over_mtls_record_the_certificate_as_actor(
    start_server: Any, all_specs: Any, pki: Pki
) -> None:
    """The all-in-one server in mTLS: services call each other (the outbox relay publishing to
    events) over TLS with their own certificate, and the caller's URI SAN is the actor."""
    from modelreg.events.v1 import event_service_pb2, event_service_pb2_grpc
    from modelreg.metadata.v1 import (
        experiment_pb2,
        experiment_service_pb2,
        experiment_service_pb2_grpc,
    )

    settings = make_settings(
        auth={"mode": "token", "admins": [f"user:{SPIFFE_ID}"]}, tls=tls_settings(pki)
    )
    server = await start_server(all_specs, settings=settings)
    async with aio.secure_channel(server.address, client_credentials(pki, pki.client)) as channel:
        experiments = experiment_service_pb2_grpc.ExperimentServiceStub(channel)
        created = await experiments.CreateExperiment(
            experiment_service_pb2.CreateExperimentRequest(
                experiment_id="churn", experiment=experiment_pb2.Experiment()
            ),
            timeout=10,
        )
        assert created.experiment.created_by == SPIFFE_ID
        # The event reaches the events service through the relay's peer channel (TLS); the
        # stream yields it once it is appended.
        stream = event_service_pb2_grpc.EventServiceStub(channel).Subscribe(
            event_service_pb2.SubscribeRequest(filter=f'actor = "{SPIFFE_ID}"'), timeout=20
        )
        async with asyncio.timeout(20):
            async for reply in stream:
                event = reply.event
                break
        stream.cancel()
    assert (event.subject, event.actor) == ("experiments/churn", SPIFFE_ID)
