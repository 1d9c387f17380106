"""Experiments: unique names, soft delete."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from modelreg_common.context import current_principal
from modelreg_common.errors import NotFound
from modelreg_common.names import check_id, parse_experiment
from modelreg_metadata.domain.common import check_etag, mask_paths
from modelreg_metadata.domain.models import (
    Event,
    Experiment,
    ExperimentState,
    IdempotencyKey,
    ListQuery,
    Page,
)
from modelreg_metadata.domain.ports import UnitOfWork
from modelreg_metadata.domain.validation import (
    MAX_DESCRIPTION_BYTES,
    Violations,
    check_request_id,
    check_tags,
    check_text,
)

KIND = "experiment"
UPDATABLE = ("description", "tags")


class ExperimentService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create(
        self,
        experiment_id: str,
        description: str,
        tags: Mapping[str, str],
        key: IdempotencyKey | None,
    ) -> Experiment:
        check_id(experiment_id, "experiment_id")
        v = Violations()
        check_text(v, "experiment.description", description, MAX_DESCRIPTION_BYTES)
        check_tags(v, "experiment.tags", tags)
        if key is not None:
            check_request_id(v, key.request_id)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            if key is not None:
                replayed = await tx.replay(key)
                if replayed is not None:
                    existing = await tx.experiments.get(parse_experiment(replayed).experiment)
                    if existing is None:
                        raise NotFound(replayed, kind=KIND)
                    return existing
            created = await tx.experiments.create(
                experiment_id, description, tags, current_principal().subject
            )
            await tx.publish(
                [
                    Event(
                        "experiment.created",
                        created.resource_name,
                        {"description": description, "tags": dict(tags)},
                    )
                ]
            )
            if key is not None:
                await tx.remember(key, created.resource_name)
            return created

    async def get(self, name: str) -> Experiment:
        parsed = parse_experiment(name)
        async with self._uow.read() as tx:
            found = await tx.experiments.get(parsed.experiment)
        if found is None:
            raise NotFound(name, kind=KIND)
        return found

    async def list(self, query: ListQuery, show_deleted: bool) -> Page[Experiment]:
        async with self._uow.read() as tx:
            return await tx.experiments.search(query, show_deleted=show_deleted)

    async def update(
        self,
        name: str,
        etag_value: str,
        paths: Sequence[str],
        description: str,
        tags: Mapping[str, str],
    ) -> Experiment:
        parsed = parse_experiment(name, "experiment.name")
        fields = mask_paths(paths, UPDATABLE, UPDATABLE)
        v = Violations()
        check_text(v, "experiment.description", description, MAX_DESCRIPTION_BYTES)
        check_tags(v, "experiment.tags", tags)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.experiments.get(parsed.experiment, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            saved = await tx.experiments.save(
                dataclasses.replace(
                    current,
                    description=description if "description" in fields else current.description,
                    tags=dict(tags) if "tags" in fields else current.tags,
                )
            )
            await tx.publish(
                [
                    Event(
                        "experiment.updated",
                        name,
                        {"update_mask": sorted(fields), "tags": dict(saved.tags)},
                    )
                ]
            )
            return saved

    async def set_state(self, name: str, etag_value: str, state: ExperimentState) -> Experiment:
        parsed = parse_experiment(name)
        async with self._uow.begin() as tx:
            current = await tx.experiments.get(parsed.experiment, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            if current.state is state:
                return current
            saved = await tx.experiments.save(dataclasses.replace(current, state=state))
            kind = "deleted" if state is ExperimentState.DELETED else "restored"
            await tx.publish([Event(f"experiment.{kind}", name, {"state": state.value})])
            return saved
