"""Settings of the events service (`MODELREG_EVENTS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EventsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELREG_EVENTS_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    # SSRF guard: loopback, private, link-local and metadata targets are refused unless set.
    allow_private_targets: bool = False
    delivery_workers: int = Field(default=16, ge=1, le=256)
    delivery_timeout_seconds: float = Field(default=10.0, gt=0)
    # A claimed delivery is handed to another worker if its worker dies: timeout + margin.
    delivery_lease_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # A Retry-After above this is capped, so a receiver cannot park a delivery forever.
    retry_after_max_seconds: float = Field(default=3600.0, gt=0)
    # Fallback wake-up of subscribers and workers when a NOTIFY is lost.
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    subscribe_page_size: int = Field(default=200, ge=1, le=1000)
    max_webhooks: int = Field(default=1000, ge=1)
    default_rotation_overlap_seconds: float = Field(default=86400.0, ge=0)
    # RecordUsage's applied batch ids are kept this long, so a flush retried within it counts
    # once; an hourly sweep deletes older ones.
    usage_batch_retention_hours: float = Field(default=168.0, gt=0)
    usage_cleanup_interval_seconds: float = Field(default=3600.0, gt=0)
    # Keys that seal webhook signing secrets at rest (AES-256-GCM): `kid:base64key` entries,
    # comma- or newline-separated, or a JSON list of them; the first seals, all open. Or the
    # same text in a file (a mounted Kubernetes Secret). Neither set: one key is generated
    # once into `<MODELREG_HOME>/webhook-secret-keys` (mode 0600) and reused.
    secret_keys: SecretStr | None = None
    secret_keys_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if self.secret_keys is not None and self.secret_keys_file is not None:
            raise ValueError("set secret_keys or secret_keys_file, not both")
        return self
