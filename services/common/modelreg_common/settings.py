"""Settings shared by every service, read from `MODELREG_*` environment variables.

Loaded once by the entry point and passed down; nothing reads the environment later.
Nested fields use `__`: `MODELREG_AUTH__MODE=token`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TokenEntry(BaseModel):
    """A bearer token known to the registry by its SHA-256 (hex), never in clear."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: str = Field(min_length=1)
    groups: list[str] = []


JwtAlgorithm = Literal["HS256", "RS256", "ES256"]


class JwtSettings(BaseModel):
    """Signed JWT bearer tokens from an identity provider (`MODELREG_AUTH__JWT__*`)."""

    # Both are required so a token minted for another service, or by another issuer, is refused.
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    # "none" is not a choice: an unsigned token must never authenticate anyone.
    algorithms: list[JwtAlgorithm] = Field(default=["RS256", "ES256"], min_length=1)
    # HS256 key shared with the issuer; at least 32 characters (RFC 7518: as long as the hash).
    hs256_secret: SecretStr | None = None
    # The issuer's public keys (RS256/ES256) as a JWK Set: a file, or an http(s) URL.
    jwks_file: Path | None = None
    jwks_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    # Clock skew tolerated on exp/nbf/iat.
    leeway_seconds: float = Field(default=30.0, ge=0, le=600)
    subject_claim: str = Field(default="sub", min_length=1)
    groups_claim: str = Field(default="groups", min_length=1)
    # How long a fetched key set is used before it is fetched again.
    jwks_cache_seconds: float = Field(default=300.0, ge=0)
    # A token with an unknown `kid` refetches the set (key rotation), at most this often.
    jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    jwks_timeout_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _keys_for_algorithms(self) -> Self:
        if "HS256" in self.algorithms:
            if self.hs256_secret is None:
                raise ValueError("algorithm HS256 needs hs256_secret")
            if len(self.hs256_secret.get_secret_value()) < 32:
                raise ValueError("hs256_secret must be at least 32 characters")
        asymmetric = [a for a in self.algorithms if a != "HS256"]
        if asymmetric and self.jwks_file is None and self.jwks_url is None:
            raise ValueError(f"algorithms {asymmetric} need jwks_file or jwks_url")
        if self.jwks_file is not None and self.jwks_url is not None:
            raise ValueError("set jwks_file or jwks_url, not both")
        return self


class AuthSettings(BaseModel):
    # local: calls without a token act as `local_principal` (loopback listeners only);
    # token: every call needs a bearer token that a verifier accepts.
    mode: Literal["local", "token"] = "local"
    tokens: list[TokenEntry] = []
    local_principal: str = "local"
    # Members (`user:{subject}`, `group:{group}`) that are admins by configuration: the
    # bootstrap before any policy exists. The local principal is always an admin.
    admins: list[str] = []
    # The role every authenticated caller holds on every model without a grant.
    default_role: Literal["none", "viewer", "editor", "approver", "owner"] = "none"
    # How long a principal's resolved roles may be served from cache when no invalidating
    # event arrives (events normally invalidate within milliseconds).
    access_cache_seconds: float = Field(default=30.0, ge=0)
    # Unset: JWT bearer tokens are not accepted.
    jwt: JwtSettings | None = None
    # How long a verified API key is trusted without asking metadata again (revocation events
    # clear the cache at once), and how many keys that cache holds.
    api_key_cache_seconds: float = Field(default=30.0, ge=0)
    api_key_cache_size: int = Field(default=10_000, ge=1)


class TlsSettings(BaseModel):
    cert_file: Path | None = None
    key_file: Path | None = None
    # Set to require client certificates signed by this CA (mTLS).
    client_ca_file: Path | None = None
    # Who a verified client certificate authenticates as: its first URI SAN (else DNS SAN,
    # else CN), its CN, or nobody ("off": the certificate only gates the connection).
    client_principal: Literal["san", "cn", "off"] = "san"
    # CA that signs the peers' server certificates; unset: client_ca_file (one private CA).
    peer_ca_file: Path | None = None
    # Client certificate presented to peers that require mTLS; unset: cert_file/key_file.
    peer_cert_file: Path | None = None
    peer_key_file: Path | None = None
    # The name peers' certificates are checked against, when it differs from the target host
    # (calling 127.0.0.1 or a pod IP with a certificate issued for a service name).
    peer_server_name: str = ""


class TelemetrySettings(BaseModel):
    # Traces go nowhere unless an exporter is chosen.
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    service_name: str = "modelreg"


class PeerSettings(BaseModel):
    """Where to reach each service; empty means "this process" (the all-in-one server)."""

    metadata: str = ""
    artifact: str = ""
    lifecycle: str = ""
    events: str = ""
    timeout_seconds: float = 5.0
    # Bearer token this service presents to its peers (needed when they run in token mode).
    token: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELREG_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    home: Path = Path(".modelreg")
    listen: str = "127.0.0.1:50051"
    # host:port of the web UI and its grpc-web gateway (`modelreg serve`); empty turns it off.
    web_listen: str = "127.0.0.1:8080"
    # Unset: an embedded PostgreSQL under `home` is started and used.
    database_url: SecretStr | None = None
    # Connections each service opens (and warms: see database.create_pool) at start-up; one
    # made later, under load, costs the call that waits for it 10-20 ms.
    pool_min_size: int = Field(default=4, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    # host:port for Prometheus `/metrics`; empty turns it off.
    metrics_listen: str = ""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    shutdown_grace_seconds: float = Field(default=3.0, ge=0)
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    peers: PeerSettings = PeerSettings()
    relay_enabled: bool = True
    # Relay rounds in flight per service: one can claim and publish while another waits for
    # the log's flush. 1 ships strictly one batch at a time.
    relay_concurrency: int = Field(default=2, ge=1, le=8)
