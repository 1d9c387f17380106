"""Model versions: numbering, the registration state machine, immutability once READY."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from modelreg_common.access import readable_models
from modelreg_common.context import current_principal
from modelreg_common.errors import FailedPrecondition, InvalidArgument, NotFound
from modelreg_common.names import parse_model, parse_model_version, parse_run
from modelreg_metadata.domain.common import check_etag, mask_paths
from modelreg_metadata.domain.models import (
    Event,
    IdempotencyKey,
    ListQuery,
    ModelVersion,
    ModelVersionDraft,
    Page,
    Signature,
    VersionState,
)
from modelreg_metadata.domain.ports import ArtifactPort, UnitOfWork
from modelreg_metadata.domain.validation import (
    MAX_DESCRIPTION_BYTES,
    MAX_TAG_VALUE_BYTES,
    MAX_TAGS,
    Violations,
    check_key,
    check_request_id,
    check_signature,
    check_tags,
    check_text,
)

KIND = "model version"
ALWAYS_MUTABLE = ("description", "tags")
# A READY version's source, signature and artifact digest are immutable.
PENDING_MUTABLE = (*ALWAYS_MUTABLE, "source", "run", "signature", "model_format", "framework")


def validate_draft(v: Violations, draft: ModelVersionDraft, prefix: str = "model_version") -> None:
    check_text(v, f"{prefix}.description", draft.description, MAX_DESCRIPTION_BYTES)
    check_tags(v, f"{prefix}.tags", draft.tags)
    check_text(v, f"{prefix}.source", draft.source)
    check_text(v, f"{prefix}.model_format", draft.model_format, 250)
    check_text(v, f"{prefix}.framework", draft.framework, 250)
    check_signature(v, f"{prefix}.signature", draft.signature)
    if draft.run:
        try:
            parse_run(draft.run, f"{prefix}.run")
        except InvalidArgument as exc:
            v.items.extend(exc.violations)


def signature_summary(signature: Signature) -> dict[str, dict[str, str]]:
    return {
        "inputs": {f.name: f.type for f in signature.inputs},
        "outputs": {f.name: f.type for f in signature.outputs},
        "params": {f.name: f.type for f in signature.params},
    }


def _event_data(version: ModelVersion) -> dict[str, Any]:
    return {
        "model": f"models/{version.model}",
        "version": version.version,
        "state": version.state.value,
        "run": version.run,
        "source": version.source,
        "tags": dict(version.tags),
        "artifact_digest": version.artifact_digest,
        "signature": signature_summary(version.signature),
    }


def _draft_event_data(draft: ModelVersionDraft) -> dict[str, Any]:
    return {
        "state": VersionState.PENDING_REGISTRATION.value,
        "run": draft.run,
        "source": draft.source,
        "tags": dict(draft.tags),
        "artifact_digest": "",
        "signature": signature_summary(draft.signature),
    }


class ModelVersionService:
    def __init__(self, uow: UnitOfWork, artifacts: ArtifactPort) -> None:
        self._uow = uow
        self._artifacts = artifacts

    async def create(
        self, parent: str, draft: ModelVersionDraft, key: IdempotencyKey | None
    ) -> ModelVersion:
        model = parse_model(parent, "parent")
        v = Violations()
        validate_draft(v, draft)
        if key is not None:
            check_request_id(v, key.request_id)
        v.raise_if_any()
        created_by = current_principal().subject
        event_data = _draft_event_data(draft)
        if key is None:
            # One statement, committed on its own: no client round trip happens while the
            # model's row lock (the version counter) is held.
            async with self._uow.read() as tx:
                created, run_exists = await tx.versions.create(
                    model.model, draft, created_by, event_data
                )
            return self._created(parent, draft, created, run_exists)
        async with self._uow.begin() as tx:
            replayed = await tx.replay(key)
            if replayed is not None:
                name = parse_model_version(replayed)
                existing = await tx.versions.get(name.model, name.version)
                if existing is None:
                    raise NotFound(replayed, kind=KIND)
                return existing
            created, run_exists = await tx.versions.create(
                model.model, draft, created_by, event_data
            )
            version = self._created(parent, draft, created, run_exists)
            await tx.remember(key, version.resource_name)
            return version

    @staticmethod
    def _created(
        parent: str, draft: ModelVersionDraft, created: ModelVersion | None, run_exists: bool
    ) -> ModelVersion:
        # The store wrote the model_version.created event in the same statement.
        if not run_exists:
            raise NotFound(draft.run, kind="run")
        if created is None:
            raise NotFound(parent, kind="registered model")
        return created

    async def get(self, name: str) -> ModelVersion:
        parsed = parse_model_version(name)
        async with self._uow.read() as tx:
            found = await tx.versions.get(parsed.model, parsed.version)
        if found is None:
            raise NotFound(name, kind=KIND)
        return found

    async def list(self, parent: str, query: ListQuery) -> Page[ModelVersion]:
        model = parse_model(parent, "parent")
        async with self._uow.read() as tx:
            page = await tx.versions.search(model.model, query)
            # An empty first page of a missing model is NOT_FOUND, not "no versions".
            empty_first = not page.items and not query.page_token
            if empty_first and await tx.models.get(model.model) is None:
                raise NotFound(parent, kind="registered model")
            return page

    async def search(self, query: ListQuery) -> Page[ModelVersion]:
        async with self._uow.read() as tx:
            return await tx.versions.search(None, query, readable=readable_models())

    async def update(
        self, name: str, etag_value: str, paths: Sequence[str], draft: ModelVersionDraft
    ) -> ModelVersion:
        parsed = parse_model_version(name, "model_version.name")
        fields = mask_paths(paths, PENDING_MUTABLE, ALWAYS_MUTABLE)
        v = Violations()
        validate_draft(v, draft)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            frozen = sorted(fields - set(ALWAYS_MUTABLE))
            if frozen and current.state is not VersionState.PENDING_REGISTRATION:
                raise FailedPrecondition(
                    f"{name} is {current.state.value}: only description and tags may change "
                    f"(update_mask has {', '.join(frozen)})",
                    from_state=current.state.value,
                )
            changes: dict[str, Any] = {}
            for path in fields:
                changes[path] = dict(draft.tags) if path == "tags" else getattr(draft, path)
            updated = dataclasses.replace(current, **changes)
            if updated.run != current.run and updated.run:
                run = parse_run(updated.run, "model_version.run")
                if await tx.runs.get(run.experiment, run.run) is None:
                    raise NotFound(updated.run, kind="run")
            saved = await tx.versions.save(
                updated,
                tags_changed="tags" in fields,
                signature_changed="signature" in fields,
            )
            if saved.run != current.run:
                await tx.versions.set_run_edge(saved, current.run)
            data = _event_data(saved) | {"update_mask": sorted(fields)}
            await tx.publish([Event("model_version.updated", saved.resource_name, data)])
            return saved

    async def finalize(self, name: str, etag_value: str) -> ModelVersion:
        parsed = parse_model_version(name)
        current = await self.get(name)
        check_etag(etag_value, current.revision, name)
        if current.state is VersionState.READY:
            return current
        if current.state is VersionState.FAILED_REGISTRATION:
            raise FailedPrecondition(
                f"{name} failed registration; create a new version",
                from_state=current.state.value,
                to_state=VersionState.READY.value,
            )
        # The peer call runs outside any transaction; sealing is idempotent on its side.
        manifest = await self._artifacts.seal_manifest(name)
        async with self._uow.begin() as tx:
            locked = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if locked is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, locked.revision, name)
            if locked.state is VersionState.READY:
                return locked
            if locked.state is not VersionState.PENDING_REGISTRATION:
                raise FailedPrecondition(
                    f"{name} is {locked.state.value}",
                    from_state=locked.state.value,
                    to_state=VersionState.READY.value,
                )
            ready = dataclasses.replace(
                locked,
                state=VersionState.READY,
                artifact_digest=manifest.digest,
                artifact_file_count=manifest.file_count,
                artifact_size_bytes=manifest.total_size_bytes,
                status_message="",
            )
            saved = await tx.versions.save(ready, tags_changed=False, signature_changed=False)
            data = _event_data(saved) | {
                "artifact_file_count": manifest.file_count,
                "artifact_size_bytes": manifest.total_size_bytes,
            }
            await tx.publish([Event("model_version.finalized", saved.resource_name, data)])
            return saved

    async def fail(self, name: str, message: str) -> ModelVersion:
        parsed = parse_model_version(name)
        v = Violations()
        check_text(v, "status_message", message)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            if current.state is VersionState.FAILED_REGISTRATION:
                return current
            if current.state is not VersionState.PENDING_REGISTRATION:
                raise FailedPrecondition(
                    f"{name} is {current.state.value}; only a pending version can fail",
                    from_state=current.state.value,
                    to_state=VersionState.FAILED_REGISTRATION.value,
                )
            failed = dataclasses.replace(
                current, state=VersionState.FAILED_REGISTRATION, status_message=message
            )
            saved = await tx.versions.save(failed, tags_changed=False, signature_changed=False)
            await tx.publish(
                [Event("model_version.failed", saved.resource_name, _event_data(saved))]
            )
            return saved

    async def delete(self, name: str, etag_value: str) -> None:
        parsed = parse_model_version(name)
        async with self._uow.begin() as tx:
            current = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            await tx.versions.delete(parsed.model, parsed.version)
            await tx.publish(
                [Event("model_version.deleted", name, {"reason": "model_version.deleted"})]
            )

    async def set_tag(self, name: str, key: str, value: str) -> ModelVersion:
        parsed = parse_model_version(name)
        v = Violations()
        check_key(v, "key", key)
        check_text(v, "value", value, MAX_TAG_VALUE_BYTES)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            if key not in current.tags and len(current.tags) >= MAX_TAGS:
                raise InvalidArgument("key", f"the version has {MAX_TAGS} tags already")
            tags = dict(current.tags)
            tags[key] = value
            saved = await tx.versions.save(
                dataclasses.replace(current, tags=tags), tags_changed=True, signature_changed=False
            )
            await tx.publish([Event("model_version_tag.set", name, {"key": key, "value": value})])
            return saved

    async def delete_tag(self, name: str, key: str) -> ModelVersion:
        parsed = parse_model_version(name)
        v = Violations()
        check_key(v, "key", key)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.versions.get(parsed.model, parsed.version, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            if key not in current.tags:
                raise NotFound(f"{name}/tags/{key}", kind="tag")
            tags = {k: val for k, val in current.tags.items() if k != key}
            saved = await tx.versions.save(
                dataclasses.replace(current, tags=tags), tags_changed=True, signature_changed=False
            )
            await tx.publish([Event("model_version_tag.deleted", name, {"key": key})])
            return saved
