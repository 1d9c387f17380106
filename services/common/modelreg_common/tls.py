"""TLS for the channels a service opens to its peers.

A service that serves TLS (`tls.cert_file`) calls its peers over TLS too: they are deployed
alike, and in the all-in-one server the peer is this very port. The peers' certificates are
checked against `tls.peer_ca_file` (default: `tls.client_ca_file`, one private CA for both
directions; neither set: the system's trusted roots). The service presents its own certificate
(`tls.peer_cert_file`/`peer_key_file`, default `cert_file`/`key_file`) as its client
certificate, so peers that require mTLS accept it.
"""

from __future__ import annotations

from typing import Any

import grpc

from modelreg_common.settings import Settings


def peers_use_tls(settings: Settings) -> bool:
    tls = settings.tls
    return tls.cert_file is not None or tls.peer_ca_file is not None


def peer_channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials for `aio.secure_channel` to a peer; None means plaintext
    (`aio.insecure_channel`)."""
    if not peers_use_tls(settings):
        return None
    tls = settings.tls
    ca_file = tls.peer_ca_file or tls.client_ca_file
    cert_file = tls.peer_cert_file or tls.cert_file
    key_file = tls.peer_key_file or tls.key_file
    if (cert_file is None) != (key_file is None):
        raise ValueError("a peer client certificate needs both a certificate and a key file")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_file.read_bytes() if ca_file is not None else None,
        private_key=key_file.read_bytes() if key_file is not None else None,
        certificate_chain=cert_file.read_bytes() if cert_file is not None else None,
    )


def peer_channel_options(settings: Settings) -> list[tuple[str, Any]]:
    """Channel options a peer channel needs for TLS: the name the peer's certificate is
    checked against when the target is an address its certificate does not name."""
    if not peers_use_tls(settings) or not settings.tls.peer_server_name:
        return []
    return [("grpc.ssl_target_name_override", settings.tls.peer_server_name)]
