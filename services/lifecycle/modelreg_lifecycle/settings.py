"""Lifecycle settings, from `MODELREG_LIFECYCLE_*` environment variables."""

from __future__ import annotations

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LifecycleSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MODELREG_LIFECYCLE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    # The registry's stages in order; versions start in the first. As JSON in the environment:
    # MODELREG_LIFECYCLE_STAGES='["None","Staging","Production","Archived"]'.
    stages: tuple[str, ...] = ("None", "Staging", "Production", "Archived")
    # Where `archive_existing_versions` sends the versions it displaces.
    archive_stage: str = "Archived"
    # Attempts of a metadata call that failed with UNAVAILABLE, with exponential backoff.
    metadata_attempts: int = 4
    metadata_backoff_seconds: float = 0.05

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one stage")
        if len(set(value)) != len(value):
            raise ValueError("stages must be unique")
        for stage in value:
            if (
                not stage
                or len(stage) > 64
                or not stage.replace("_", "").replace("-", "").isalnum()
            ):
                raise ValueError(f"bad stage name {stage!r}")
        return value

    @model_validator(mode="after")
    def _archive(self) -> LifecycleSettings:
        if self.archive_stage and self.archive_stage not in self.stages:
            raise ValueError(f"archive_stage {self.archive_stage!r} is not one of the stages")
        return self
