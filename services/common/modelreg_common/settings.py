"""Settings shared by every service, read from `MODELREG_*` environment variables.

Loaded once by the entry point and passed down; nothing reads the environment later.
Nested fields use `__`: `MODELREG_AUTH__MODE=token`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TokenEntry(BaseModel):
    """A bearer token known to the registry by its SHA-256 (hex), never in clear."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    principal: str = Field(min_length=1)
    groups: list[str] = []


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


class TlsSettings(BaseModel):
    cert_file: Path | None = None
    key_file: Path | None = None
    # Set to require client certificates signed by this CA (mTLS).
    client_ca_file: Path | None = None


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
    # Unset: an embedded PostgreSQL under `home` is started and used.
    database_url: SecretStr | None = None
    pool_min_size: int = Field(default=1, ge=0)
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
