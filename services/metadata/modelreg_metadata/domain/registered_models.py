"""Registered models: rules, validation and events."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from modelreg_common.access import Role, readable_models
from modelreg_common.context import current_principal
from modelreg_common.errors import FailedPrecondition, NotFound
from modelreg_common.names import check_id, parse_model
from modelreg_metadata.domain.common import check_etag, mask_paths
from modelreg_metadata.domain.models import (
    Binding,
    Event,
    IdempotencyKey,
    ListQuery,
    Page,
    RegisteredModel,
)
from modelreg_metadata.domain.ports import AccessChanged, LifecyclePort, UnitOfWork
from modelreg_metadata.domain.validation import (
    MAX_DESCRIPTION_BYTES,
    Violations,
    check_request_id,
    check_tags,
    check_text,
)

KIND = "registered model"
UPDATABLE = ("description", "tags")


class RegisteredModelService:
    def __init__(
        self, uow: UnitOfWork, lifecycle: LifecyclePort, on_access_changed: AccessChanged
    ) -> None:
        self._uow = uow
        self._lifecycle = lifecycle
        self._access_changed = on_access_changed

    async def create(
        self,
        model_id: str,
        description: str,
        tags: Mapping[str, str],
        key: IdempotencyKey | None,
    ) -> RegisteredModel:
        check_id(model_id, "registered_model_id")
        v = Violations()
        check_text(v, "registered_model.description", description, MAX_DESCRIPTION_BYTES)
        check_tags(v, "registered_model.tags", tags)
        if key is not None:
            check_request_id(v, key.request_id)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            if key is not None:
                replayed = await tx.replay(key)
                if replayed is not None:
                    existing = await tx.models.get(parse_model(replayed).model)
                    if existing is None:
                        raise NotFound(replayed, kind=KIND)
                    return existing
            creator = current_principal()
            model = await tx.models.create(model_id, description, tags, creator.subject)
            data: dict[str, object] = {"description": description, "tags": dict(tags)}
            # The creator owns what it creates, in the same transaction, so there is no
            # moment when the model exists and nobody may manage it. The services' own
            # principal creates on someone else's behalf and owns nothing. The grant travels
            # in the created event (one event per creation); other processes re-resolve the
            # creator's roles on its first denied call.
            if creator.method != "internal":
                owner = (Binding(Role.OWNER, (f"user:{creator.subject}",)),)
                await tx.policies.replace(model.resource_name, owner, creator.subject)
                data["owner"] = f"user:{creator.subject}"
            events = [Event("registered_model.created", model.resource_name, data)]
            await tx.publish(events)
            if key is not None:
                await tx.remember(key, model.resource_name)
        # The creator's cached roles lack the new model until this process forgets them.
        self._access_changed()
        return model

    async def get(self, name: str) -> RegisteredModel:
        model_name = parse_model(name)
        async with self._uow.read() as tx:
            model = await tx.models.get(model_name.model)
        if model is None:
            raise NotFound(name, kind=KIND)
        return model

    async def search(self, query: ListQuery) -> Page[RegisteredModel]:
        async with self._uow.read() as tx:
            return await tx.models.search(query, readable=readable_models())

    async def update(
        self,
        name: str,
        etag_value: str,
        paths: Sequence[str],
        description: str,
        tags: Mapping[str, str],
    ) -> RegisteredModel:
        model_name = parse_model(name, "registered_model.name")
        fields = mask_paths(paths, UPDATABLE, UPDATABLE)
        v = Violations()
        check_text(v, "registered_model.description", description, MAX_DESCRIPTION_BYTES)
        check_tags(v, "registered_model.tags", tags)
        v.raise_if_any()
        async with self._uow.begin() as tx:
            current = await tx.models.get(model_name.model, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            updated = dataclasses.replace(
                current,
                description=description if "description" in fields else current.description,
                tags=dict(tags) if "tags" in fields else current.tags,
            )
            saved = await tx.models.save(updated, tags_changed="tags" in fields)
            await tx.publish(
                [
                    Event(
                        "registered_model.updated",
                        saved.resource_name,
                        {
                            "update_mask": sorted(fields),
                            "description": saved.description,
                            "tags": dict(saved.tags),
                        },
                    )
                ]
            )
            return saved

    async def rename(self, name: str, new_id: str, etag_value: str) -> RegisteredModel:
        model_name = parse_model(name)
        check_id(new_id, "new_registered_model_id")
        async with self._uow.begin() as tx:
            current = await tx.models.get(model_name.model, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            if new_id == current.name:
                return current
            renamed = await tx.models.rename(current.name, new_id)
            # Grants belong to the model, not to its name: they move with it.
            await tx.policies.move(current.resource_name, renamed.resource_name)
            await tx.publish(
                [
                    Event(
                        "registered_model.renamed",
                        renamed.resource_name,
                        {"old_name": name, "new_name": renamed.resource_name},
                    )
                ]
            )
        self._access_changed()
        return renamed

    async def delete(self, name: str, etag_value: str, force: bool) -> int:
        """Deletes the model and its versions (hard delete; the versions' artifacts are
        released through the `model_version.deleted` events). Without `force`, aliases or
        pending approvals on its versions block the delete."""
        model_name = parse_model(name)
        async with self._uow.read() as tx:
            if await tx.models.get(model_name.model) is None:
                raise NotFound(name, kind=KIND)
        if not force:
            # Asked before the transaction: never hold a connection across a peer call.
            blockers = await self._lifecycle.deletion_blockers(model_name.model)
            if blockers:
                raise FailedPrecondition(
                    f"{name} still has aliases or pending transition requests "
                    f"({', '.join(blockers[:5])}); remove them or delete with force",
                    metadata={"blockers": ",".join(blockers[:20])},
                )
        async with self._uow.begin() as tx:
            current = await tx.models.get(model_name.model, for_update=True)
            if current is None:
                raise NotFound(name, kind=KIND)
            check_etag(etag_value, current.revision, name)
            versions = await tx.models.delete(current.name)
            # A model later created under the same name must not inherit these grants.
            await tx.policies.delete(current.resource_name)
            events = [
                Event(
                    "model_version.deleted",
                    f"{name}/versions/{n}",
                    {"reason": "registered_model.deleted"},
                )
                for n in versions
            ]
            events.append(
                Event("registered_model.deleted", name, {"deleted_versions": len(versions)})
            )
            await tx.publish(events)
        self._access_changed()
        return len(versions)
