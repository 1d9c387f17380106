"""Runs: params immutable once logged, metrics with history, inputs recorded as lineage."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modelreg_common.context import current_principal
from modelreg_common.errors import FailedPrecondition, InvalidArgument, NotFound
from modelreg_common.names import check_id, parse_experiment, parse_run
from modelreg_metadata.domain.common import check_etag, hexid, mask_paths
from modelreg_metadata.domain.models import (
    CodeVersion,
    DatasetInput,
    EdgeType,
    Event,
    ExperimentState,
    IdempotencyKey,
    LineageEdge,
    LineageNode,
    ListQuery,
    MetricPoint,
    NodeType,
    Page,
    Run,
    RunDraft,
    RunStatus,
)
from modelreg_metadata.domain.ports import Tx, UnitOfWork
from modelreg_metadata.domain.validation import (
    MAX_INPUTS,
    MAX_METRICS_PER_CALL,
    MAX_PARAM_VALUE_BYTES,
    MAX_PARAMS_PER_CALL,
    MAX_TAGS,
    Violations,
    check_code,
    check_inputs,
    check_key,
    check_metrics,
    check_request_id,
    check_tags,
    check_text,
)

KIND = "run"
UPDATABLE = ("display_name", "status", "end_time", "tags")
TERMINAL = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED})


def _check_params(v: Violations, field: str, params: Mapping[str, str]) -> None:
    if len(params) > MAX_PARAMS_PER_CALL:
        v.add(field, f"more than {MAX_PARAMS_PER_CALL} params")
        return
    for key, value in params.items():
        check_key(v, f"{field}[{key[:60]!r}]", key)
        check_text(v, f"{field}[{key[:60]!r}]", value, MAX_PARAM_VALUE_BYTES)


def _check_data(
    v: Violations,
    prefix: str,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    inputs: Sequence[DatasetInput],
    metrics: Sequence[MetricPoint],
) -> None:
    _check_params(v, f"{prefix}params", params)
    check_tags(v, f"{prefix}tags", tags)
    if len(inputs) > MAX_INPUTS:
        v.add(f"{prefix}inputs", f"more than {MAX_INPUTS} inputs")
    else:
        check_inputs(v, f"{prefix}inputs", inputs)
    if len(metrics) > MAX_METRICS_PER_CALL:
        v.add(f"{prefix}metrics", f"more than {MAX_METRICS_PER_CALL} points in one call")
    else:
        check_metrics(v, f"{prefix}metrics", metrics)


def _merge_params(name: str, current: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Params are immutable: the same value again is a no-op, another value is refused."""
    merged = dict(current)
    for key, value in new.items():
        old = merged.get(key)
        if old is not None and old != value:
            raise FailedPrecondition(
                f"param {key[:100]!r} of {name} is already {old[:100]!r}; params are immutable",
                metadata={"param": key[:250]},
            )
        merged[key] = value
    return merged


def _dataset_node(d: DatasetInput) -> LineageNode:
    return LineageNode(
        name=f"datasets/{hexid(d.name, d.digest)}",
        type=NodeType.DATASET,
        display_name=d.name,
        properties={"name": d.name, "digest": d.digest, "source_uri": d.source_uri},
    )


def _code_node(code: CodeVersion) -> LineageNode:
    return LineageNode(
        name=f"code/{hexid(code.repository_url, code.commit, code.entry_point)}",
        type=NodeType.CODE,
        display_name=f"{code.repository_url}@{code.commit}",
        properties={
            "repository_url": code.repository_url,
            "commit": code.commit,
            "entry_point": code.entry_point,
        },
    )


async def _record_inputs(
    tx: Tx, run_name: str, inputs: Sequence[DatasetInput], code: CodeVersion | None
) -> tuple[DatasetInput, ...]:
    """Dataset and code nodes with INPUT edges into the run; returns inputs with their node."""
    nodes = [_dataset_node(d) for d in inputs]
    edges = [
        LineageEdge(node.name, run_name, EdgeType.INPUT, {"context": d.context})
        for node, d in zip(nodes, inputs, strict=True)
    ]
    if code is not None and not code.empty:
        code_node = _code_node(code)
        nodes.append(code_node)
        edges.append(LineageEdge(code_node.name, run_name, EdgeType.INPUT, {"context": "code"}))
    await tx.lineage.upsert_nodes(nodes)
    await tx.lineage.add_edges(edges)
    return tuple(
        dataclasses.replace(d, lineage_node=n.name) for d, n in zip(inputs, nodes, strict=False)
    )


class RunService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create(
        self,
        parent: str,
        run_id: str,
        draft: RunDraft,
        metrics: Sequence[MetricPoint],
        key: IdempotencyKey | None,
    ) -> Run:
        experiment = parse_experiment(parent, "parent")
        if run_id:
            check_id(run_id, "run_id")
        v = Violations()
        check_text(v, "run.display_name", draft.display_name, 250)
        _check_data(v, "run.", draft.params, draft.tags, draft.inputs, metrics)
        check_code(v, "run.code", draft.code)
        if key is not None:
            check_request_id(v, key.request_id)
        start, end = draft.start_time, draft.end_time
        if start is not None and end is not None and end < start:
            v.add("run.end_time", "is before start_time")
        v.raise_if_any()
        async with self._uow.begin() as tx:
            if key is not None:
                replayed = await tx.replay(key)
                if replayed is not None:
                    name = parse_run(replayed)
                    existing = await tx.runs.get(name.experiment, name.run)
                    if existing is None:
                        raise NotFound(replayed, kind=KIND)
                    return existing
            exp = await tx.experiments.get(experiment.experiment)
            if exp is None:
                raise NotFound(parent, kind="experiment")
            if exp.state is ExperimentState.DELETED:
                raise FailedPrecondition(
                    f"{parent} is deleted; restore it first", from_state=exp.state.value
                )
            new_id = run_id or uuid.uuid4().hex
            run_name = f"{parent}/runs/{new_id}"
            inputs = await _record_inputs(tx, run_name, draft.inputs, draft.code)
            status = draft.status or RunStatus.RUNNING
            created = await tx.runs.create(
                experiment.experiment,
                new_id,
                dataclasses.replace(draft, inputs=inputs),
                status,
                current_principal().subject,
            )
            if created is None:
                raise NotFound(parent, kind="experiment")
            if metrics:
                await tx.runs.log_metrics(experiment.experiment, new_id, metrics)
                created = await tx.runs.get(experiment.experiment, new_id) or created
            await tx.publish(
                [Event("run.created", run_name, {"status": status.value, "tags": dict(draft.tags)})]
            )
            if key is not None:
                await tx.remember(key, run_name)
            return created

    async def get(self, name: str) -> Run:
        parsed = parse_run(name)
        async with self._uow.read() as tx:
            found = await tx.runs.get(parsed.experiment, parsed.run)
        if found is None:
            raise NotFound(name, kind=KIND)
        return found

    async def update(
        self, name: str, etag_value: str, paths: Sequence[str], draft: RunDraft
    ) -> Run:
        parsed = parse_run(name, "run.name")
        fields = mask_paths(paths, UPDATABLE, ("display_name", "tags"))
        v = Violations()
        check_text(v, "run.display_name", draft.display_name, 250)
        check_tags(v, "run.tags", draft.tags)
        if "status" in fields and draft.status is None:
            v.add("run.status", "must be set when update_mask has status")
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.runs.get(parsed.experiment, parsed.run, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            changes: dict[str, Any] = {}
            if "display_name" in fields:
                changes["display_name"] = draft.display_name
            if "tags" in fields:
                changes["tags"] = dict(draft.tags)
            if "status" in fields and draft.status is not None:
                changes["status"] = draft.status
                if draft.status in TERMINAL and current.end_time is None:
                    changes["end_time"] = datetime.now(UTC)
            if "end_time" in fields:
                changes["end_time"] = draft.end_time
            updated = dataclasses.replace(current, **changes)
            if updated.end_time is not None and updated.end_time < updated.start_time:
                raise InvalidArgument("run.end_time", "is before start_time")
            saved = await tx.runs.save(updated)
            await tx.publish(
                [
                    Event(
                        "run.updated",
                        name,
                        {"update_mask": sorted(fields), "status": saved.status.value},
                    )
                ]
            )
            return saved

    async def delete(self, name: str) -> None:
        parsed = parse_run(name)
        async with self._uow.begin() as tx:
            if not await tx.runs.delete(parsed.experiment, parsed.run):
                raise NotFound(name, kind=KIND)
            await tx.publish([Event("run.deleted", name, {})])

    async def log_data(
        self,
        name: str,
        params: Mapping[str, str],
        metrics: Sequence[MetricPoint],
        tags: Mapping[str, str],
        inputs: Sequence[DatasetInput],
    ) -> Run:
        parsed = parse_run(name)
        v = Violations()
        _check_data(v, "", params, tags, inputs, metrics)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.runs.get(parsed.experiment, parsed.run, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            merged_tags = {**current.tags, **tags}
            if len(merged_tags) > MAX_TAGS:
                raise InvalidArgument("tags", f"a run has at most {MAX_TAGS} tags")
            new_inputs = await _record_inputs(tx, name, inputs, None)
            known = {(d.name, d.digest, d.context) for d in current.inputs}
            updated = dataclasses.replace(
                current,
                params=_merge_params(name, current.params, params),
                tags=merged_tags,
                inputs=current.inputs
                + tuple(d for d in new_inputs if (d.name, d.digest, d.context) not in known),
            )
            if metrics:
                await tx.runs.log_metrics(parsed.experiment, parsed.run, metrics)
            saved = await tx.runs.save(updated)
            await tx.publish(
                [
                    Event(
                        "run.updated",
                        name,
                        {
                            "params": len(params),
                            "metrics": len(metrics),
                            "tags": len(tags),
                            "inputs": len(inputs),
                        },
                    )
                ]
            )
            return saved

    async def delete_tag(self, name: str, key: str) -> Run:
        parsed = parse_run(name)
        v = Violations()
        check_key(v, "key", key)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.runs.get(parsed.experiment, parsed.run, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            if key not in current.tags:
                raise NotFound(f"{name}/tags/{key}", kind="tag")
            saved = await tx.runs.save(
                dataclasses.replace(
                    current, tags={k: val for k, val in current.tags.items() if k != key}
                )
            )
            await tx.publish([Event("run.updated", name, {"deleted_tag": key})])
            return saved

    async def metric_history(
        self, name: str, key: str, page_size: int, page_token: str
    ) -> Page[MetricPoint]:
        parsed = parse_run(name)
        v = Violations()
        check_key(v, "key", key)
        v.raise_if_any()
        async with self._uow.read() as tx:
            if await tx.runs.get(parsed.experiment, parsed.run) is None:
                raise NotFound(name, kind=KIND)
            return await tx.runs.metric_history(
                parsed.experiment, parsed.run, key, page_size, page_token
            )

    async def search(self, parent: str, query: ListQuery) -> Page[Run]:
        experiment = None if parent == "experiments/-" else parse_experiment(parent, "parent")
        async with self._uow.read() as tx:
            return await tx.runs.search(
                experiment.experiment if experiment is not None else None, query
            )
