"""Which version a rollback restores."""

from __future__ import annotations

from datetime import UTC, datetime

from modelreg_lifecycle.domain.history import rollback_target
from modelreg_lifecycle.domain.models import AliasAction, AliasHistoryEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(
    i: int, from_v: int | None, to_v: int | None, action: AliasAction = AliasAction.SET
) -> AliasHistoryEntry:
    return AliasHistoryEntry(i, "m", "a", from_v, to_v, action, "u", "", T0, "")


def test_no_previous_holder() -> None:
    assert rollback_target([]) is None
    assert rollback_target([entry(1, None, 1)]) is None


def test_rollbacks_walk_back_through_holders() -> None:
    history = [entry(1, None, 1), entry(2, 1, 2), entry(3, 2, 3)]
    assert rollback_target(history) == 2
    history.append(entry(4, 3, 2, AliasAction.ROLLBACK))
    assert rollback_target(history) == 1
    history.append(entry(5, 2, 1, AliasAction.ROLLBACK))
    assert rollback_target(history) is None


def test_delete_forgets_earlier_holders() -> None:
    history = [entry(1, None, 1), entry(2, 1, None, AliasAction.DELETE), entry(3, None, 2)]
    assert rollback_target(history) is None
    history.append(entry(4, 2, 5))
    assert rollback_target(history) == 2
