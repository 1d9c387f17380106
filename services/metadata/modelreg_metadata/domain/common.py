"""Small rules every resource family shares: etags, update masks, ids."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

from modelreg_common.errors import EtagMismatch, InvalidArgument


def etag(revision: int) -> str:
    """A quoted row revision (AIP-154)."""
    return f'"{revision}"'


def check_etag(given: str, revision: int, name: str) -> None:
    """An empty etag makes the call unconditional; a stale one is ABORTED."""
    if given and given != etag(revision):
        raise EtagMismatch(name)


def mask_paths(
    paths: Sequence[str], allowed: Collection[str], default: Sequence[str]
) -> frozenset[str]:
    """The validated paths of an update mask; an empty mask means `default`."""
    if not paths:
        return frozenset(default)
    for i, path in enumerate(paths):
        if path not in allowed:
            raise InvalidArgument(
                "update_mask",
                f"paths[{i}] {path[:100]!r} is not updatable; updatable: "
                + ", ".join(sorted(allowed)),
            )
    return frozenset(paths)


def hexid(*parts: str) -> str:
    """A stable 32-hex id from its parts (used for dataset and code lineage nodes)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]
