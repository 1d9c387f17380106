"""Helpers that only combine RPCs: register a model from files, download a version with digest
checks, promote through the policy, and a Subscribe that resumes after disconnects.

They are methods of `Registry` (`SyncHelpers`) and `AsyncRegistry` (`AsyncHelpers`):

    version = registry.register_model("fraud", "out/model", run="experiments/e/runs/r")
    registry.download("models:/fraud@champion", "/tmp/fraud")
    registry.promote("fraud", version.version, "champion")
    for event in registry.subscribe('type = "model_version.alias_set"', after_sequence=0): ...
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast

from google.protobuf import json_format

from modelreg.artifact.transfer import DEFAULT_CHUNK, DigestMismatch, download_file, upload_file
from modelreg.artifact.v1 import artifact_pb2, artifact_service_pb2
from modelreg.client._config import CallPolicy
from modelreg.client.errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    FailedPreconditionError,
    InternalError,
    NotFoundError,
    RegistryError,
    UnavailableError,
)
from modelreg.events.v1 import event_pb2
from modelreg.lifecycle.v1 import alias_pb2, transition_request_pb2
from modelreg.metadata.v1 import model_version_pb2, signature_pb2

# (path of the file being moved, bytes done so far over all files, total bytes of all files)
ProgressCallback = Callable[[str, int, int], None]
SignatureLike = signature_pb2.ModelSignature | Mapping[str, Any]

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# A broken stream is worth resuming after these; anything else is the caller's problem.
_RESUMABLE = (UnavailableError, CancelledError, AbortedError, InternalError)

__all__ = [
    "DigestMismatch",
    "ProgressCallback",
    "Promotion",
    "model_name",
    "parse_reference",
]


# -- names and references -----------------------------------------------------------------


def model_name(model: str) -> str:
    """`fraud` or `models/fraud` -> `models/fraud`."""
    name = model if model.startswith("models/") else f"models/{model}"
    if not _MODEL_ID.match(name.removeprefix("models/")):
        raise ValueError(f"not a model name: {model!r} (expected `fraud` or `models/fraud`)")
    return name


def version_name(model: str, version: int | str) -> str:
    """(`fraud`, 3) or (`fraud`, `models/fraud/versions/3`) -> `models/fraud/versions/3`."""
    if isinstance(version, str) and version.startswith("models/"):
        return version
    number = int(version)
    if number < 1:
        raise ValueError(f"version numbers start at 1, got {version!r}")
    return f"{model_name(model)}/versions/{number}"


@dataclass(frozen=True)
class Reference:
    """A parsed model reference: `alias` is set for `...@alias`, else `version` is a name."""

    model: str
    alias: str = ""
    version: str = ""


def parse_reference(reference: str) -> Reference:
    """`models:/fraud@champion`, `models/fraud@champion`, `models:/fraud/3` or
    `models/fraud/versions/3`."""
    text = reference.strip()
    uri = text.startswith("models:/")
    body = text.removeprefix("models:/") if uri else text.removeprefix("models/")
    if not uri and not text.startswith("models/"):
        raise ValueError(
            f"not a model reference: {reference!r} (expected models:/<model>@<alias>, "
            "models:/<model>/<n> or models/<model>/versions/<n>)"
        )
    if "@" in body:
        model, _, alias = body.partition("@")
        if not alias or "/" in alias:
            raise ValueError(f"not a model reference: {reference!r}")
        return Reference(model_name(model), alias=alias)
    parts = body.split("/")
    if uri and len(parts) == 2 and parts[1].isdigit():
        return Reference(model_name(parts[0]), version=version_name(parts[0], parts[1]))
    if not uri and len(parts) == 3 and parts[1] == "versions" and parts[2].isdigit():
        return Reference(model_name(parts[0]), version=version_name(parts[0], parts[2]))
    raise ValueError(f"not a model reference: {reference!r}")


def _signature(signature: SignatureLike | None) -> signature_pb2.ModelSignature | None:
    if signature is None or isinstance(signature, signature_pb2.ModelSignature):
        return signature
    return json_format.ParseDict(dict(signature), signature_pb2.ModelSignature())


def _files(path: str | os.PathLike[str]) -> list[tuple[str, Path, int]]:
    """(artifact path, local file, size) of a file or of every file under a folder."""
    root = Path(path)
    if root.is_file():
        return [(root.name, root, root.stat().st_size)]
    if not root.is_dir():
        raise FileNotFoundError(f"no file or folder at {root}")
    found = []
    for current, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            local = Path(current) / name
            if local.is_file():
                relative = local.relative_to(root).as_posix()
                found.append((relative, local, local.stat().st_size))
    if not found:
        raise FileNotFoundError(f"no files under {root}")
    return found


def _destination(root: Path, artifact_path: str) -> Path:
    """Where a downloaded file goes; a path that would leave `root` is refused."""
    relative = PurePosixPath(artifact_path)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"refusing to write {artifact_path!r} outside {root}")
    return root.joinpath(*relative.parts)


def _new_version(
    *,
    run: str,
    signature: SignatureLike | None,
    tags: Mapping[str, str] | None,
    description: str,
    source: str,
    model_format: str,
    framework: str,
) -> model_version_pb2.ModelVersion:
    version = model_version_pb2.ModelVersion(
        run=run,
        tags=dict(tags or {}),
        description=description,
        source=source,
        model_format=model_format,
        framework=framework,
    )
    parsed = _signature(signature)
    if parsed is not None:
        version.signature.CopyFrom(parsed)
    return version


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: moved the alias, or (protected alias) opened a transition request."""

    alias: alias_pb2.Alias | None = None
    transition_request: transition_request_pb2.TransitionRequest | None = None

    @property
    def moved(self) -> bool:
        return self.alias is not None


def _is_protected(err: FailedPreconditionError) -> bool:
    return err.metadata.get("protected") == "true"


# A transfer's deadline grows with its size: the call deadline plus one second per MiB, so a
# slow but moving multi-GB upload is not cut off while a stalled one still ends.
_SECONDS_PER_BYTE = 1 / (1024 * 1024)


def _transfer_timeout(policy: CallPolicy, size: int) -> float:
    return policy.timeout + size * _SECONDS_PER_BYTE


def _backoff(attempt: int, ceiling: float) -> float:
    return random.uniform(0, min(ceiling, 0.1 * 2 ** min(attempt, 10)))


# -- synchronous --------------------------------------------------------------------------


class SyncHelpers:
    """Mixed into `Registry`."""

    metadata: Any
    artifacts: Any
    lifecycle: Any
    events: Any
    policy: CallPolicy

    def ensure_model(self, model: str, *, description: str = "") -> str:
        """The model's name, creating the model if it does not exist."""
        name = model_name(model)
        try:
            self.metadata.get_registered_model(name=name)
        except NotFoundError:
            # Created meanwhile by someone else: fine.
            with contextlib.suppress(AlreadyExistsError):
                self.metadata.create_registered_model(
                    registered_model_id=name.removeprefix("models/"),
                    registered_model={"description": description},
                )
        return name

    def register_model(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        run: str = "",
        signature: SignatureLike | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        source: str = "",
        model_format: str = "",
        framework: str = "",
        progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> model_version_pb2.ModelVersion:
        """Create the model if missing, a pending version, stream its files, finalize: the READY
        version. If an upload fails the version is marked FAILED_REGISTRATION and the error
        re-raised."""
        files = _files(path)
        name = self.ensure_model(model)
        created = self.metadata.create_model_version(
            parent=name,
            model_version=_new_version(
                run=run, signature=signature, tags=tags, description=description,
                source=source, model_format=model_format, framework=framework,
            ),
        ).model_version  # fmt: skip
        total = sum(size for _, _, size in files)
        done = 0
        try:
            for artifact_path, local, size in files:
                self._upload(created.name, artifact_path, local, size, chunk_size, done, total,
                             progress)  # fmt: skip
                done += size
        except BaseException as exc:
            self._fail(created.name, exc)
            raise
        finalized: model_version_pb2.ModelVersion = self.metadata.finalize_model_version(
            name=created.name
        ).model_version
        return finalized

    def _fail(self, version: str, exc: BaseException) -> None:
        # The original error matters more; if this fails the version stays pending.
        with contextlib.suppress(RegistryError):
            self.metadata.fail_model_version(
                name=version, status_message=f"upload failed: {exc}"[:1000]
            )

    def _upload(
        self,
        owner: str,
        artifact_path: str,
        local: Path,
        size: int,
        chunk_size: int,
        done: int,
        total: int,
        progress: ProgressCallback | None,
    ) -> artifact_pb2.FileEntry:
        hasher = hashlib.sha256()

        def requests() -> Iterator[artifact_service_pb2.UploadRequest]:
            yield artifact_service_pb2.UploadRequest(
                header=artifact_service_pb2.UploadHeader(
                    owner=owner, path=artifact_path, expected_size_bytes=size
                )
            )
            sent = done
            with local.open("rb", buffering=0) as handle:
                while data := handle.read(chunk_size):
                    hasher.update(data)
                    yield artifact_service_pb2.UploadRequest(chunk=data)
                    sent += len(data)
                    if progress is not None:
                        progress(artifact_path, sent, total)

        entry: artifact_pb2.FileEntry = self.artifacts.upload(
            requests(), timeout=_transfer_timeout(self.policy, size)
        ).file
        local_digest = f"sha256:{hasher.hexdigest()}"
        if entry.digest != local_digest:
            raise DigestMismatch(f"sent {local_digest}, the service stored {entry.digest}")
        if progress is not None and size == 0:
            progress(artifact_path, done, total)
        return entry

    def resolve(self, reference: str) -> model_version_pb2.ModelVersion:
        """The version record a reference names (an alias is resolved now)."""
        ref = parse_reference(reference)
        if ref.alias:
            found: model_version_pb2.ModelVersion = self.lifecycle.resolve_alias(
                name=f"{ref.model}@{ref.alias}"
            ).model_version
            return found
        version: model_version_pb2.ModelVersion = self.metadata.get_model_version(
            name=ref.version
        ).model_version
        return version

    def download(
        self,
        reference: str,
        dest: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> model_version_pb2.ModelVersion:
        """Download every file of a version (`models:/fraud@champion`, `models/fraud/versions/3`)
        into `dest`, checking each file's sha256 against the service's record."""
        version = self.resolve(reference)
        files = list(self._list_files(version.name))
        total = sum(f.size_bytes for f in files)
        root = Path(dest)
        done = 0
        for entry in files:
            target = _destination(root, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            done = self._download_file(version.name, entry, target, done, total, progress)
        return version

    def _list_files(self, owner: str) -> Iterator[artifact_pb2.FileEntry]:
        token = ""
        while True:
            page = self.artifacts.list_files(owner=owner, page_size=1000, page_token=token)
            yield from page.files
            token = page.next_page_token
            if not token:
                return

    def _download_file(
        self,
        owner: str,
        entry: artifact_pb2.FileEntry,
        target: Path,
        done: int,
        total: int,
        progress: ProgressCallback | None,
    ) -> int:
        hasher = hashlib.sha256()
        partial = target.with_name(target.name + ".part")
        recorded = entry.digest
        # Each chunk is hashed in a thread while this one writes it (both let go of the GIL
        # and take about as long): the verified download costs one pass, not two.
        hashing: Future[None] | None = None
        try:
            with partial.open("wb") as handle, ThreadPoolExecutor(1) as hash_thread:
                for message in self.artifacts.download(
                    owner=owner,
                    path=entry.path,
                    timeout=_transfer_timeout(self.policy, entry.size_bytes),
                ):
                    if message.HasField("file"):
                        recorded = message.file.digest
                    data = message.chunk
                    if data:
                        if hashing is not None:
                            hashing.result()
                        hashing = hash_thread.submit(hasher.update, data)
                        handle.write(data)
                        done += len(data)
                        if progress is not None:
                            progress(entry.path, done, total)
                if hashing is not None:
                    hashing.result()
            got = f"sha256:{hasher.hexdigest()}"
            if got != recorded:
                raise DigestMismatch(f"{entry.path}: received {got}, recorded {recorded}")
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return done

    def promote(
        self,
        model: str,
        version: int | str,
        alias: str,
        *,
        reason: str = "",
    ) -> Promotion:
        """Point `alias` at the version; when a policy protects the alias, open a transition
        request instead (approvers then move it)."""
        name = model_name(model)
        target = version_name(name, version)
        try:
            moved = self.lifecycle.set_alias(
                name=f"{name}/aliases/{alias}", version=target, reason=reason
            ).alias
            return Promotion(alias=moved)
        except FailedPreconditionError as err:
            if not _is_protected(err):
                raise
        request = self.lifecycle.create_transition_request(
            parent=name,
            transition_request={"version": target, "alias": alias, "comment": reason},
        ).transition_request
        return Promotion(transition_request=request)

    def last_sequence(self, filter: str = "") -> int:
        """The sequence of the newest event matching `filter` (0 if none)."""
        page = self.events.list_events(filter=filter, order_by="sequence desc", page_size=1)
        return int(page.events[0].sequence) if page.events else 0

    def subscribe(
        self,
        filter: str = "",
        *,
        after_sequence: int | None = None,
        max_reconnects: int | None = None,
        max_backoff: float = 5.0,
    ) -> Generator[event_pb2.Event, None, None]:
        """Events matching `filter` after `after_sequence` (None: from now on), live. A broken
        stream is reopened after the last sequence seen, so no event is lost or repeated."""
        last = self.last_sequence(filter) if after_sequence is None else after_sequence
        failures = 0
        while True:
            try:
                for reply in self.events.subscribe(filter=filter, after_sequence=last):
                    if reply.event.sequence > last:
                        last = reply.event.sequence
                        failures = 0
                        yield reply.event
            except _RESUMABLE:
                pass
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                raise UnavailableError(f"the event stream broke {failures} times in a row")
            time.sleep(_backoff(failures, max_backoff))


# -- asyncio ------------------------------------------------------------------------------


class _StubAdapter:
    """The shape `modelreg.artifact.transfer` expects of a stub (`Upload`, `Download`), on top
    of the client's group so calls carry its token and map its errors; it also reports
    progress per chunk."""

    def __init__(
        self,
        artifacts: Any,
        path: str,
        done: int,
        total: int,
        progress: ProgressCallback | None,
    ) -> None:
        self._artifacts = artifacts
        self._path = path
        self.done = done
        self._total = total
        self._progress = progress

    def _count(self, size: int) -> None:
        self.done += size
        if self._progress is not None and size:
            self._progress(self._path, self.done, self._total)

    async def Upload(
        self,
        requests: AsyncIterator[artifact_service_pb2.UploadRequest],
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline
    ) -> artifact_service_pb2.UploadResponse:
        async def counted() -> AsyncIterator[artifact_service_pb2.UploadRequest]:
            async for request in requests:
                yield request
                self._count(len(request.chunk))

        reply: artifact_service_pb2.UploadResponse = await self._artifacts.upload(
            counted(), timeout=timeout
        )
        return reply

    async def Download(
        self,
        request: artifact_service_pb2.DownloadRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - a gRPC deadline
    ) -> AsyncIterator[artifact_service_pb2.DownloadResponse]:
        async for reply in self._artifacts.download(request, timeout=timeout):
            yield reply
            self._count(len(reply.chunk))


class AsyncHelpers:
    """Mixed into `AsyncRegistry`; the same helpers, awaited."""

    metadata: Any
    artifacts: Any
    lifecycle: Any
    events: Any
    policy: CallPolicy

    async def ensure_model(self, model: str, *, description: str = "") -> str:
        name = model_name(model)
        try:
            await self.metadata.get_registered_model(name=name)
        except NotFoundError:
            with contextlib.suppress(AlreadyExistsError):
                await self.metadata.create_registered_model(
                    registered_model_id=name.removeprefix("models/"),
                    registered_model={"description": description},
                )
        return name

    async def register_model(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        run: str = "",
        signature: SignatureLike | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        source: str = "",
        model_format: str = "",
        framework: str = "",
        progress: ProgressCallback | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> model_version_pb2.ModelVersion:
        files = await asyncio.to_thread(_files, path)
        name = await self.ensure_model(model)
        created = (
            await self.metadata.create_model_version(
                parent=name,
                model_version=_new_version(
                    run=run, signature=signature, tags=tags, description=description,
                    source=source, model_format=model_format, framework=framework,
                ),
            )
        ).model_version  # fmt: skip
        total = sum(size for _, _, size in files)
        done = 0
        try:
            for artifact_path, local, size in files:
                adapter = _StubAdapter(self.artifacts, artifact_path, done, total, progress)
                await upload_file(
                    cast(Any, adapter),
                    created.name,
                    artifact_path,
                    local,
                    chunk_size=chunk_size,
                    rpc_timeout=_transfer_timeout(self.policy, size),
                )
                done += size
                if progress is not None and size == 0:
                    progress(artifact_path, done, total)
        except BaseException as exc:
            await self._fail(created.name, exc)
            raise
        finalized: model_version_pb2.ModelVersion = (
            await self.metadata.finalize_model_version(name=created.name)
        ).model_version
        return finalized

    async def _fail(self, version: str, exc: BaseException) -> None:
        with contextlib.suppress(RegistryError):
            await self.metadata.fail_model_version(
                name=version, status_message=f"upload failed: {exc}"[:1000]
            )

    async def resolve(self, reference: str) -> model_version_pb2.ModelVersion:
        ref = parse_reference(reference)
        if ref.alias:
            reply = await self.lifecycle.resolve_alias(name=f"{ref.model}@{ref.alias}")
        else:
            reply = await self.metadata.get_model_version(name=ref.version)
        found: model_version_pb2.ModelVersion = reply.model_version
        return found

    async def download(
        self,
        reference: str,
        dest: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
    ) -> model_version_pb2.ModelVersion:
        version = await self.resolve(reference)
        files: list[artifact_pb2.FileEntry] = []
        token = ""
        while True:
            page = await self.artifacts.list_files(
                owner=version.name, page_size=1000, page_token=token
            )
            files.extend(page.files)
            token = page.next_page_token
            if not token:
                break
        total = sum(f.size_bytes for f in files)
        root = Path(dest)
        done = 0
        for entry in files:
            target = _destination(root, entry.path)
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            adapter = _StubAdapter(self.artifacts, entry.path, done, total, progress)
            # download_file verifies the sha256 and removes the file on a mismatch.
            await download_file(
                cast(Any, adapter),
                version.name,
                entry.path,
                target,
                rpc_timeout=_transfer_timeout(self.policy, entry.size_bytes),
            )
            done = adapter.done
        return version

    async def promote(
        self, model: str, version: int | str, alias: str, *, reason: str = ""
    ) -> Promotion:
        name = model_name(model)
        target = version_name(name, version)
        try:
            reply = await self.lifecycle.set_alias(
                name=f"{name}/aliases/{alias}", version=target, reason=reason
            )
            return Promotion(alias=reply.alias)
        except FailedPreconditionError as err:
            if not _is_protected(err):
                raise
        created = await self.lifecycle.create_transition_request(
            parent=name,
            transition_request={"version": target, "alias": alias, "comment": reason},
        )
        return Promotion(transition_request=created.transition_request)

    async def last_sequence(self, filter: str = "") -> int:
        page = await self.events.list_events(filter=filter, order_by="sequence desc", page_size=1)
        return int(page.events[0].sequence) if page.events else 0

    async def subscribe(
        self,
        filter: str = "",
        *,
        after_sequence: int | None = None,
        max_reconnects: int | None = None,
        max_backoff: float = 5.0,
    ) -> AsyncGenerator[event_pb2.Event, None]:
        last = await self.last_sequence(filter) if after_sequence is None else after_sequence
        failures = 0
        while True:
            try:
                async for reply in self.events.subscribe(filter=filter, after_sequence=last):
                    if reply.event.sequence > last:
                        last = reply.event.sequence
                        failures = 0
                        yield reply.event
            except _RESUMABLE:
                pass
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                raise UnavailableError(f"the event stream broke {failures} times in a row")
            await asyncio.sleep(_backoff(failures, max_backoff))
