"""Settings of the events service (`MODELREG_EVENTS_*`)."""

from __future__ import annotations

from pydantic import Field
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
