"""The lifecycle's tables in PostgreSQL: plain, parameterised SQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from modelreg_common import idempotency, outbox
from modelreg_common.context import current_call, current_principal
from modelreg_common.database import transaction
from modelreg_common.errors import Aborted
from modelreg_lifecycle.domain.models import (
    Alias,
    AliasAction,
    AliasHistoryEntry,
    Degradation,
    Deployment,
    DeploymentStatus,
    Event,
    RecordedMetric,
    RequestState,
    Review,
    StageHistoryEntry,
    Target,
    TargetKind,
    TransitionRequest,
    VersionStage,
)
from modelreg_lifecycle.domain.policies import Policy, RuleDraft, build_policy
from modelreg_lifecycle.domain.ports import AliasMove, IdempotencyKey

Row = asyncpg.Record

_ALIAS_COLUMNS = "model, alias, version, revision, updater, update_time"
_REQUEST_COLUMNS = (
    "id, model, version, target_kind, target, comment, state, requester, base, "
    "required_approvals, failure_reason, closing_reviewer, closing_comment, closing_time, "
    "create_time, update_time, archive_existing"
)
_DEPLOYMENT_COLUMNS = (
    "id, model, version, environment, endpoint, status, recorder, create_time, end_time, "
    "lineage_node"
)
_DEGRADATION_COLUMNS = (
    "id, model, version, environment, metric, threshold, value, start_time, end_time"
)


def _request_id() -> str:
    call = current_call()
    return call.request_id if call is not None else ""


def _alias(row: Row) -> Alias:
    return Alias(
        model=row["model"],
        alias=row["alias"],
        version=row["version"],
        revision=row["revision"],
        updater=row["updater"],
        update_time=row["update_time"],
    )


def _history(row: Row) -> AliasHistoryEntry:
    return AliasHistoryEntry(
        id=row["id"],
        model=row["model"],
        alias=row["alias"],
        from_version=row["from_version"],
        to_version=row["to_version"],
        action=AliasAction(row["action"]),
        actor=row["actor"],
        reason=row["reason"],
        time=row["time"],
        request_id=row["request_id"],
        transition_request=row["transition_request"],
    )


def _stage_history(row: Row) -> StageHistoryEntry:
    return StageHistoryEntry(
        id=row["id"],
        model=row["model"],
        version=row["version"],
        from_stage=row["from_stage"],
        to_stage=row["to_stage"],
        actor=row["actor"],
        reason=row["reason"],
        time=row["time"],
        request_id=row["request_id"],
        transition_request=row["transition_request"],
    )


def _stage(row: Row) -> VersionStage:
    return VersionStage(
        row["model"], row["version"], row["stage"], row["updater"], row["update_time"]
    )


def _policy(row: Row, stages: Sequence[str] | None = None) -> Policy:
    doc = row["document"]
    rules = [
        RuleDraft(
            aliases=r.get("aliases", []),
            stages=r.get("stages", []),
            protected=r.get("protected", False),
            required_approvals=r.get("required_approvals", 1),
            approver_role=r.get("approver_role", ""),
            checks=r.get("checks", []),
        )
        for r in doc.get("rules", [])
    ]
    # Stored documents were validated when written; stages are not re-checked so a policy
    # naming a stage that configuration later dropped still loads (the rule just never matches).
    known = sorted({s for r in rules for s in r.stages})
    policy = build_policy(row["scope"], rules, doc.get("thresholds", []), known)
    return Policy(
        scope=policy.scope,
        rules=policy.rules,
        thresholds=policy.thresholds,
        revision=row["revision"],
        updater=row["updater"],
        update_time=row["update_time"],
    )


def _policy_document(policy: Policy) -> dict[str, Any]:
    return {
        "rules": [
            {
                "aliases": list(r.aliases),
                "stages": list(r.stages),
                "protected": r.protected,
                "required_approvals": r.required_approvals,
                "approver_role": r.approver_role,
                "checks": [c.text for c in r.checks],
            }
            for r in policy.rules
        ],
        "thresholds": [str(t) for t in policy.thresholds],
    }


def _request(row: Row, approvals: Sequence[Row]) -> TransitionRequest:
    closing = None
    if row["closing_reviewer"] is not None:
        closing = Review(row["closing_reviewer"], row["closing_comment"] or "", row["closing_time"])
    return TransitionRequest(
        id=row["id"],
        model=row["model"],
        version=row["version"],
        target=Target(TargetKind(row["target_kind"]), row["target"]),
        comment=row["comment"],
        state=RequestState(row["state"]),
        requester=row["requester"],
        base=row["base"],
        required_approvals=row["required_approvals"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        approvals=tuple(Review(a["approver"], a["comment"], a["time"]) for a in approvals),
        closing_review=closing,
        failure_reason=row["failure_reason"],
        archive_existing=row["archive_existing"],
    )


def _deployment(row: Row) -> Deployment:
    return Deployment(
        id=row["id"],
        model=row["model"],
        version=row["version"],
        environment=row["environment"],
        endpoint=row["endpoint"],
        status=DeploymentStatus(row["status"]),
        recorder=row["recorder"],
        create_time=row["create_time"],
        end_time=row["end_time"],
        lineage_node=row["lineage_node"],
    )


def _degradation(row: Row) -> Degradation:
    return Degradation(
        model=row["model"],
        version=row["version"],
        environment=row["environment"],
        metric=row["metric"],
        threshold=row["threshold"],
        value=row["value"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        id=row["id"],
    )


async def _load_requests(conn: Any, rows: Sequence[Row]) -> list[TransitionRequest]:
    if not rows:
        return []
    approvals = await conn.fetch(
        "SELECT request_id, approver, comment, time FROM approvals"
        " WHERE request_id = any($1::text[]) ORDER BY time, approver",
        [r["id"] for r in rows],
    )
    by_request: dict[str, list[Row]] = {}
    for a in approvals:
        by_request.setdefault(a["request_id"], []).append(a)
    return [_request(r, by_request.get(r["id"], [])) for r in rows]


class PgTransaction:
    def __init__(self, conn: Any) -> None:
        # A pooled connection (a proxy of asyncpg.Connection) inside a transaction.
        self._conn = conn

    async def add_events(self, events: Sequence[Event]) -> None:
        await outbox.add_events(
            self._conn,
            [outbox.OutboxEvent(type=e.type, subject=e.subject, data=dict(e.data)) for e in events],
        )

    async def idempotent_response(self, key: IdempotencyKey) -> bytes | None:
        return await idempotency.lookup(self._conn, key.request_id, key.method, key.digest)

    async def save_response(self, key: IdempotencyKey, response: bytes) -> None:
        try:
            await idempotency.save(self._conn, key.request_id, key.method, key.digest, response)
        except asyncpg.UniqueViolationError:
            # A concurrent call with the same request id committed first; this one rolls back
            # and its retry gets that call's response.
            raise Aborted(
                f"request_id {key.request_id!r} is in use by a concurrent call; retry"
            ) from None

    async def lock_alias(self, model: str, alias: str) -> Alias | None:
        # An advisory lock, not FOR UPDATE: it also serializes the first creation of an alias,
        # when there is no row to lock yet.
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"alias:{model}@{alias}"
        )
        row = await self._conn.fetchrow(
            f"SELECT {_ALIAS_COLUMNS} FROM aliases WHERE model = $1 AND alias = $2", model, alias
        )
        return _alias(row) if row is not None else None

    async def move_alias(self, move: AliasMove) -> Alias | None:
        actor = current_principal().subject
        conn = self._conn
        if move.to_version is None:
            await conn.execute(
                "DELETE FROM aliases WHERE model = $1 AND alias = $2", move.model, move.alias
            )
            row = None
        else:
            row = await conn.fetchrow(
                "INSERT INTO aliases"
                " (model, alias, version, record, revision, updater, update_time)"
                " VALUES ($1, $2, $3, $4, 1, $5, clock_timestamp())"
                " ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version,"
                " record = excluded.record, revision = aliases.revision + 1,"
                " updater = excluded.updater, update_time = excluded.update_time"
                f" RETURNING {_ALIAS_COLUMNS}",
                move.model,
                move.alias,
                move.to_version,
                move.record,
                actor,
            )
        await conn.execute(
            "INSERT INTO alias_history (model, alias, from_version, to_version, record, action,"
            " actor, reason, request_id, transition_request, time)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, clock_timestamp())",
            move.model,
            move.alias,
            move.from_version,
            move.to_version,
            move.record,
            move.action.value,
            actor,
            move.reason,
            _request_id(),
            move.transition_request,
        )
        return _alias(row) if row is not None else None

    async def refresh_record(self, model: str, alias: str, record: bytes) -> None:
        await self._conn.execute(
            "UPDATE aliases SET record = $3 WHERE model = $1 AND alias = $2", model, alias, record
        )

    async def lock_stages(self, model: str) -> None:
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"stages:{model}"
        )

    async def stage_of(self, model: str, version: int) -> str | None:
        value: str | None = await self._conn.fetchval(
            "SELECT stage FROM version_stages WHERE model = $1 AND version = $2", model, version
        )
        return value

    async def versions_in_stage(self, model: str, stage: str) -> list[int]:
        rows = await self._conn.fetch(
            "SELECT version FROM version_stages WHERE model = $1 AND stage = $2 ORDER BY version",
            model,
            stage,
        )
        return [r["version"] for r in rows]

    async def move_stage(
        self,
        model: str,
        version: int,
        from_stage: str,
        to_stage: str,
        reason: str,
        transition_request: str = "",
    ) -> VersionStage:
        actor = current_principal().subject
        row = await self._conn.fetchrow(
            "INSERT INTO version_stages (model, version, stage, updater, update_time)"
            " VALUES ($1, $2, $3, $4, clock_timestamp())"
            " ON CONFLICT (model, version) DO UPDATE SET stage = excluded.stage,"
            " updater = excluded.updater, update_time = excluded.update_time"
            " RETURNING model, version, stage, updater, update_time",
            model,
            version,
            to_stage,
            actor,
        )
        await self._conn.execute(
            "INSERT INTO stage_history (model, version, from_stage, to_stage, actor, reason,"
            " request_id, transition_request, time)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp())",
            model,
            version,
            from_stage,
            to_stage,
            actor,
            reason,
            _request_id(),
            transition_request,
        )
        assert row is not None
        return _stage(row)

    async def lock_policy(self, scope: str) -> Policy | None:
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"policy:{scope}"
        )
        row = await self._conn.fetchrow(
            "SELECT scope, document, revision, updater, update_time FROM policies WHERE scope = $1",
            scope,
        )
        return _policy(row) if row is not None else None

    async def save_policy(self, policy: Policy) -> Policy:
        row = await self._conn.fetchrow(
            "INSERT INTO policies (scope, document, revision, updater, update_time)"
            " VALUES ($1, $2, 1, $3, clock_timestamp())"
            " ON CONFLICT (scope) DO UPDATE SET document = excluded.document,"
            " revision = policies.revision + 1, updater = excluded.updater,"
            " update_time = excluded.update_time"
            " RETURNING scope, document, revision, updater, update_time",
            policy.scope,
            _policy_document(policy),
            current_principal().subject,
        )
        assert row is not None
        return _policy(row)

    async def delete_policy(self, scope: str) -> None:
        await self._conn.execute("DELETE FROM policies WHERE scope = $1", scope)

    async def insert_request(self, request: TransitionRequest) -> TransitionRequest:
        row = await self._conn.fetchrow(
            "INSERT INTO transition_requests (id, model, version, target_kind, target, comment,"
            " state, requester, base, required_approvals, archive_existing, create_time,"
            " update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " clock_timestamp(), clock_timestamp())"
            f" RETURNING {_REQUEST_COLUMNS}",
            request.id,
            request.model,
            request.version,
            request.target.kind.value,
            request.target.name,
            request.comment,
            request.state.value,
            request.requester,
            request.base,
            request.required_approvals,
            request.archive_existing,
        )
        assert row is not None
        return _request(row, [])

    async def lock_request(self, model: str, id: str) -> TransitionRequest | None:
        row = await self._conn.fetchrow(
            f"SELECT {_REQUEST_COLUMNS} FROM transition_requests WHERE model = $1 AND id = $2"
            " FOR UPDATE",
            model,
            id,
        )
        if row is None:
            return None
        return (await _load_requests(self._conn, [row]))[0]

    async def add_approval(self, model: str, id: str, reviewer: str, comment: str) -> bool:
        status: str = await self._conn.execute(
            "INSERT INTO approvals (request_id, approver, comment, time)"
            " VALUES ($1, $2, $3, clock_timestamp()) ON CONFLICT DO NOTHING",
            id,
            reviewer,
            comment,
        )
        return status.endswith(" 1")

    async def close_request(
        self,
        model: str,
        id: str,
        state: RequestState,
        *,
        review: Review | None = None,
        failure_reason: str = "",
    ) -> TransitionRequest:
        row = await self._conn.fetchrow(
            "UPDATE transition_requests SET state = $3, failure_reason = $4,"
            " closing_reviewer = $5, closing_comment = $6,"
            " closing_time = CASE WHEN $5::text IS NULL THEN NULL ELSE clock_timestamp() END,"
            " update_time = clock_timestamp()"
            f" WHERE model = $1 AND id = $2 RETURNING {_REQUEST_COLUMNS}",
            model,
            id,
            state.value,
            failure_reason,
            review.reviewer if review else None,
            review.comment if review else None,
        )
        assert row is not None
        return (await _load_requests(self._conn, [row]))[0]

    async def fail_stale_requests(
        self,
        model: str,
        *,
        alias: str = "",
        version: int = 0,
        current: str,
        reason: str,
        exclude: str = "",
    ) -> list[TransitionRequest]:
        excluded = exclude.rsplit("/", 1)[-1]
        if alias:
            rows = await self._conn.fetch(
                "UPDATE transition_requests SET state = 'FAILED', failure_reason = $4,"
                " update_time = clock_timestamp()"
                " WHERE model = $1 AND target_kind = 'alias' AND target = $2"
                " AND state = 'PENDING' AND base <> $3 AND id <> $5"
                f" RETURNING {_REQUEST_COLUMNS}",
                model,
                alias,
                current,
                reason,
                excluded,
            )
        else:
            rows = await self._conn.fetch(
                "UPDATE transition_requests SET state = 'FAILED', failure_reason = $4,"
                " update_time = clock_timestamp()"
                " WHERE model = $1 AND target_kind = 'stage' AND version = $2"
                " AND state = 'PENDING' AND base <> $3 AND id <> $5"
                f" RETURNING {_REQUEST_COLUMNS}",
                model,
                version,
                current,
                reason,
                excluded,
            )
        return await _load_requests(self._conn, rows)

    async def insert_deployment(self, deployment: Deployment) -> Deployment:
        # A newer record for the same place supersedes the one running there.
        await self._conn.execute(
            "UPDATE deployments SET end_time = clock_timestamp()"
            " WHERE model = $1 AND environment = $2 AND endpoint = $3 AND end_time IS NULL",
            deployment.model,
            deployment.environment,
            deployment.endpoint,
        )
        row = await self._conn.fetchrow(
            "INSERT INTO deployments (id, model, version, environment, endpoint, status,"
            " recorder, lineage_node, create_time)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp())"
            f" RETURNING {_DEPLOYMENT_COLUMNS}",
            deployment.id,
            deployment.model,
            deployment.version,
            deployment.environment,
            deployment.endpoint,
            deployment.status.value,
            deployment.recorder,
            deployment.lineage_node,
        )
        assert row is not None
        return _deployment(row)

    async def insert_metrics(self, metrics: Sequence[RecordedMetric]) -> list[RecordedMetric]:
        rows = await self._conn.fetch(
            "INSERT INTO production_metrics (model, version, environment, metric, value,"
            " window_seconds, record_time)"
            " SELECT u.*, clock_timestamp() FROM unnest($1::text[], $2::bigint[], $3::text[],"
            " $4::text[], $5::float8[], $6::float8[]) AS u"
            " RETURNING model, version, environment, metric, value, window_seconds, record_time",
            [m.model for m in metrics],
            [m.version for m in metrics],
            [m.environment for m in metrics],
            [m.metric for m in metrics],
            [m.value for m in metrics],
            [m.window_seconds for m in metrics],
        )
        return [
            RecordedMetric(
                r["model"],
                r["version"],
                r["environment"],
                r["metric"],
                r["value"],
                r["window_seconds"],
                r["record_time"],
            )
            for r in rows
        ]

    async def open_degradation(self, degradation: Degradation) -> Degradation | None:
        row = await self._conn.fetchrow(
            "INSERT INTO degradations (model, version, environment, metric, threshold, value,"
            " start_time) VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())"
            " ON CONFLICT (model, version, environment, metric) WHERE end_time IS NULL"
            f" DO NOTHING RETURNING {_DEGRADATION_COLUMNS}",
            degradation.model,
            degradation.version,
            degradation.environment,
            degradation.metric,
            degradation.threshold,
            degradation.value,
        )
        return _degradation(row) if row is not None else None

    async def close_degradation(
        self, model: str, version: int, environment: str, metric: str
    ) -> Degradation | None:
        row = await self._conn.fetchrow(
            "UPDATE degradations SET end_time = clock_timestamp()"
            " WHERE model = $1 AND version = $2 AND environment = $3 AND metric = $4"
            f" AND end_time IS NULL RETURNING {_DEGRADATION_COLUMNS}",
            model,
            version,
            environment,
            metric,
        )
        return _degradation(row) if row is not None else None


class PgStore:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[PgTransaction]:
        async with transaction(self._pool) as conn:
            yield PgTransaction(conn)

    async def get_alias(self, model: str, alias: str) -> Alias | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ALIAS_COLUMNS} FROM aliases WHERE model = $1 AND alias = $2", model, alias
        )
        return _alias(row) if row is not None else None

    async def resolve(self, model: str, alias: str) -> tuple[int, bytes] | None:
        # The hot path: one primary-key read on a prepared statement (the runtime's pool
        # skips asyncpg's per-release reset round trip).
        row = await self._pool.fetchrow(
            "SELECT version, record FROM aliases WHERE model = $1 AND alias = $2", model, alias
        )
        return (row[0], bytes(row[1])) if row is not None else None

    async def resolve_at(self, model: str, alias: str, at: datetime) -> tuple[int, bytes] | None:
        row = await self._pool.fetchrow(
            "SELECT to_version, record FROM alias_history"
            " WHERE model = $1 AND alias = $2 AND time <= $3 ORDER BY id DESC LIMIT 1",
            model,
            alias,
            at,
        )
        if row is None or row[0] is None:
            return None
        return row[0], bytes(row[1])

    async def list_aliases(self, model: str, after: str, limit: int) -> list[Alias]:
        rows = await self._pool.fetch(
            f"SELECT {_ALIAS_COLUMNS} FROM aliases WHERE model = $1 AND alias > $2"
            " ORDER BY alias LIMIT $3",
            model,
            after,
            limit,
        )
        return [_alias(r) for r in rows]

    async def alias_history(
        self,
        model: str,
        alias: str,
        before_id: int | None,
        limit: int,
        *,
        newest_first: bool = True,
    ) -> list[AliasHistoryEntry]:
        columns = (
            "id, model, alias, from_version, to_version, action, actor, reason, request_id,"
            " transition_request, time"
        )
        if newest_first:
            rows = await self._pool.fetch(
                f"SELECT {columns} FROM alias_history WHERE model = $1 AND alias = $2"
                " AND id < $3 ORDER BY id DESC LIMIT $4",
                model,
                alias,
                before_id if before_id is not None else 2**63 - 1,
                limit,
            )
            return [_history(r) for r in rows]
        rows = await self._pool.fetch(
            f"SELECT * FROM (SELECT {columns} FROM alias_history WHERE model = $1 AND alias = $2"
            " ORDER BY id DESC LIMIT $3) newest ORDER BY id",
            model,
            alias,
            limit,
        )
        return [_history(r) for r in rows]

    async def get_stage(self, model: str, version: int) -> VersionStage | None:
        row = await self._pool.fetchrow(
            "SELECT model, version, stage, updater, update_time FROM version_stages"
            " WHERE model = $1 AND version = $2",
            model,
            version,
        )
        return _stage(row) if row is not None else None

    async def list_stages(self, model: str) -> list[VersionStage]:
        rows = await self._pool.fetch(
            "SELECT model, version, stage, updater, update_time FROM version_stages"
            " WHERE model = $1 ORDER BY version LIMIT 10000",
            model,
        )
        return [_stage(r) for r in rows]

    async def stage_history(
        self, model: str, version: int | None, before_id: int | None, limit: int
    ) -> list[StageHistoryEntry]:
        rows = await self._pool.fetch(
            "SELECT id, model, version, from_stage, to_stage, actor, reason, request_id,"
            " transition_request, time FROM stage_history"
            " WHERE model = $1 AND ($2::bigint IS NULL OR version = $2) AND id < $3"
            " ORDER BY id DESC LIMIT $4",
            model,
            version,
            before_id if before_id is not None else 2**63 - 1,
            limit,
        )
        return [_stage_history(r) for r in rows]

    async def policies_for(self, model: str) -> list[Policy]:
        rows = await self._pool.fetch(
            "SELECT scope, document, revision, updater, update_time FROM policies"
            " WHERE scope = '' OR scope = $1",
            model,
        )
        return [_policy(r) for r in rows]

    async def get_policy(self, scope: str) -> Policy | None:
        row = await self._pool.fetchrow(
            "SELECT scope, document, revision, updater, update_time FROM policies WHERE scope = $1",
            scope,
        )
        return _policy(row) if row is not None else None

    async def get_request(self, model: str, id: str) -> TransitionRequest | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_REQUEST_COLUMNS} FROM transition_requests WHERE model = $1 AND id = $2",
                model,
                id,
            )
            if row is None:
                return None
            return (await _load_requests(conn, [row]))[0]

    async def list_requests(
        self,
        model: str | None,
        state: RequestState | None,
        before: tuple[datetime, str] | None,
        limit: int,
        *,
        readable: frozenset[str] | None = None,
    ) -> list[TransitionRequest]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_REQUEST_COLUMNS} FROM transition_requests"
                " WHERE ($1::text IS NULL OR model = $1)"
                " AND ($6::text[] IS NULL OR model = ANY($6))"
                " AND ($2::text IS NULL OR state = $2)"
                " AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4))"
                " ORDER BY create_time DESC, id DESC LIMIT $5",
                model,
                state.value if state else None,
                before[0] if before else None,
                before[1] if before else "",
                limit,
                sorted(readable) if readable is not None else None,
            )
            return await _load_requests(conn, rows)

    async def list_deployments(
        self,
        model: str,
        environment: str,
        current_only: bool,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Deployment]:
        rows = await self._pool.fetch(
            f"SELECT {_DEPLOYMENT_COLUMNS} FROM deployments WHERE model = $1"
            " AND ($2 = '' OR environment = $2) AND (NOT $3 OR end_time IS NULL)"
            " AND ($4::timestamptz IS NULL OR (create_time, id) < ($4, $5))"
            " ORDER BY create_time DESC, id DESC LIMIT $6",
            model,
            environment,
            current_only,
            before[0] if before else None,
            before[1] if before else "",
            limit,
        )
        return [_deployment(r) for r in rows]

    async def list_degradations(
        self, model: str, open_only: bool, before_id: int | None, limit: int
    ) -> list[Degradation]:
        rows = await self._pool.fetch(
            f"SELECT {_DEGRADATION_COLUMNS} FROM degradations WHERE model = $1"
            " AND (NOT $2 OR end_time IS NULL) AND id < $3 ORDER BY id DESC LIMIT $4",
            model,
            open_only,
            before_id if before_id is not None else 2**63 - 1,
            limit,
        )
        return [_degradation(r) for r in rows]
