"""Artifact service settings, from `MODELREG_ARTIFACT_*` (nested with `__`, e.g.
`MODELREG_ARTIFACT_S3__BUCKET=models`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class S3Settings(BaseModel):
    # Empty: botocore's own resolution (AWS_ENDPOINT_URL, ~/.aws/config, then AWS itself).
    endpoint_url: str = ""
    region: str = "us-east-1"
    bucket: str = ""
    # Every object key starts with this (e.g. `modelreg/`), so one bucket can be shared.
    prefix: str = ""
    # Path-style addressing (`endpoint/bucket/key`) suits MinIO, SeaweedFS and most on-prem S3.
    path_style: bool = True
    # Unset: the usual AWS credential chain (environment, config files, instance roles).
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # SigV4 payload hashing of every part (off: the service verifies sha256 itself).
    sign_payload: bool = False
    max_connections: int = Field(default=32, ge=1)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=60.0, gt=0)
    # Few attempts: an outage should surface as UNAVAILABLE quickly, the client retries.
    max_attempts: int = Field(default=2, ge=1)


class ArtifactSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELREG_ARTIFACT_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    backend: Literal["local", "s3"] = "local"
    # Local backend directory; unset: `<MODELREG_HOME>/artifacts`.
    root: Path | None = None
    s3: S3Settings = S3Settings()
    # Bytes travel in parts of this size (S3 multipart needs >= 5 MiB); memory per upload is
    # about part_size * (parts_in_flight + 1).
    part_size_bytes: int = Field(default=8 * MIB, ge=5 * MIB, le=512 * MIB)
    parts_in_flight: int = Field(default=2, ge=1, le=64)
    # Just under 4 MiB: a gRPC client with default options refuses larger messages.
    download_chunk_bytes: int = Field(default=4 * MIB - 64 * 1024, ge=64 * 1024, le=15 * MIB)
    # Chunks a download fetches ahead of the one being sent (memory: this many chunks per
    # download); 0 reads only when gRPC asks for the next message.
    download_read_ahead_chunks: int = Field(default=2, ge=0, le=16)
    # glibc heap arenas for the whole process (modelreg_common.memory: bounds the RSS that
    # freed multi-MiB chunks leave behind); 0 leaves glibc's default. MALLOC_ARENA_MAX wins.
    malloc_arena_max: int = Field(default=2, ge=0, le=64)
    max_file_bytes: int = Field(default=1024**4, ge=0)
    max_owner_bytes: int = Field(default=4 * 1024**4, ge=0)
    max_path_bytes: int = Field(default=1024, ge=1)
    max_segment_bytes: int = Field(default=255, ge=1)
    # Idle pending uploads are discarded (and their bytes deleted) after this long.
    upload_session_ttl_seconds: float = Field(default=24 * 3600.0, ge=0)
    # An unreferenced blob is kept this long after its last use, so a concurrent upload of the
    # same bytes or an ongoing download never loses it to the collector.
    blob_grace_seconds: float = Field(default=3600.0, ge=0)
    # A stream that holds an upload but shows no progress for this long loses its claim.
    stream_stale_seconds: float = Field(default=120.0, gt=0)
    gc_interval_seconds: float = Field(default=300.0, gt=0)
    gc_enabled: bool = True
    gc_batch_size: int = Field(default=200, ge=1)
    presign_ttl_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
