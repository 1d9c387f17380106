"""Reading alias history: which version held an alias before the current one."""

from __future__ import annotations

from collections.abc import Sequence

from modelreg_lifecycle.domain.models import AliasAction, AliasHistoryEntry


def rollback_target(history_oldest_first: Sequence[AliasHistoryEntry]) -> int | None:
    """The version a rollback restores: history is replayed as a stack of holders, so a set
    pushes, a rollback pops and a delete clears. A->B->C rolls back to B, then to A."""
    stack: list[int] = []
    for entry in history_oldest_first:
        if entry.action is AliasAction.DELETE or entry.to_version is None:
            stack.clear()
        elif entry.action is AliasAction.ROLLBACK:
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry.to_version:
                stack.append(entry.to_version)
        elif not stack or stack[-1] != entry.to_version:
            stack.append(entry.to_version)
    return stack[-2] if len(stack) >= 2 else None
