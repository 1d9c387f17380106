"""Resource names shared across services (AIP-122), parsed and checked in one place.

    models/{model}                      a registered model
    models/{model}/versions/{version}   a model version (version: 1, 2, ...)
    experiments/{experiment}            an experiment
    experiments/{experiment}/runs/{run} a run

Ids: 1-128 characters of letters, digits, `.`, `_`, `-`, starting and ending with a letter or
digit. Version numbers are positive decimal integers without leading zeros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelreg_common.errors import InvalidArgument

ID_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?"
_ID = re.compile(rf"^{ID_PATTERN}$")
_MODEL = re.compile(rf"^models/({ID_PATTERN})$")
_VERSION = re.compile(rf"^models/({ID_PATTERN})/versions/([1-9][0-9]{{0,17}})$")
_EXPERIMENT = re.compile(rf"^experiments/({ID_PATTERN})$")
_RUN = re.compile(rf"^experiments/({ID_PATTERN})/runs/({ID_PATTERN})$")


def check_id(value: str, field: str) -> str:
    if not _ID.match(value):
        raise InvalidArgument(
            field,
            "must be 1-128 letters, digits, '.', '_' or '-', starting and ending with a "
            f"letter or digit; got {value[:200]!r}",
        )
    return value


@dataclass(frozen=True)
class ModelName:
    model: str

    def __str__(self) -> str:
        return f"models/{self.model}"


@dataclass(frozen=True)
class ModelVersionName:
    model: str
    version: int

    def __str__(self) -> str:
        return f"models/{self.model}/versions/{self.version}"

    @property
    def parent(self) -> ModelName:
        return ModelName(self.model)


@dataclass(frozen=True)
class ExperimentName:
    experiment: str

    def __str__(self) -> str:
        return f"experiments/{self.experiment}"


@dataclass(frozen=True)
class RunName:
    experiment: str
    run: str

    def __str__(self) -> str:
        return f"experiments/{self.experiment}/runs/{self.run}"


def parse_model(name: str, field: str = "name") -> ModelName:
    match = _MODEL.match(name)
    if match is None:
        raise InvalidArgument(field, f"expected models/{{model}}, got {name[:200]!r}")
    return ModelName(match[1])


def parse_model_version(name: str, field: str = "name") -> ModelVersionName:
    match = _VERSION.match(name)
    if match is None:
        raise InvalidArgument(
            field, f"expected models/{{model}}/versions/{{number}}, got {name[:200]!r}"
        )
    return ModelVersionName(match[1], int(match[2]))


def parse_experiment(name: str, field: str = "name") -> ExperimentName:
    match = _EXPERIMENT.match(name)
    if match is None:
        raise InvalidArgument(field, f"expected experiments/{{experiment}}, got {name[:200]!r}")
    return ExperimentName(match[1])


def parse_run(name: str, field: str = "name") -> RunName:
    match = _RUN.match(name)
    if match is None:
        raise InvalidArgument(
            field, f"expected experiments/{{experiment}}/runs/{{run}}, got {name[:200]!r}"
        )
    return RunName(match[1], match[2])
