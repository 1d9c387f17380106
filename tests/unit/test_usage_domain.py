"""The events service's usage rules without I/O: parents, records, and the filter compiled to
parameterised SQL over the whitelisted fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelreg_common.errors import InvalidArgument
from modelreg_common.filters import SqlParams, compile_filter
from modelreg_common.usage import model_version_of
from modelreg_events.domain.models import NewUsage, UsageParent
from modelreg_events.domain.usage import check_batch_id, check_records, parse_parent
from modelreg_events.domain.usage import parse_usage_filter as parse
from modelreg_events.store.usage import USAGE_FIELDS

NOW = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
HOUR = datetime(2026, 11, 30, 6, tzinfo=UTC)


def test_parents_are_a_model_or_one_of_its_versions() -> None:
    assert parse_parent("models/fraud") == UsageParent("fraud")
    assert parse_parent("models/fraud/versions/12") == UsageParent("fraud", 12)
    assert str(parse_parent("models/fraud/versions/12")) == "models/fraud/versions/12"
    for bad in ("", "models/", "models/fraud/versions/01", "models/a/b", "runs/x", "models/-x"):
        with pytest.raises(InvalidArgument) as err:
            parse_parent(bad)
        assert err.value.violations[0].field == "parent"


def test_records_are_checked_and_keep_their_utc_hour() -> None:
    # The same instant in another zone is the same hour.
    elsewhere = HOUR.astimezone(timezone(timedelta(hours=-5)))
    (checked,) = check_records(
        [NewUsage("models/m/versions/3", "alice", "DOWNLOAD", elsewhere, 2)], NOW
    )
    assert (checked.model, checked.version, checked.hour_start, checked.count) == ("m", 3, HOUR, 2)
    assert checked.model_version == "models/m/versions/3"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (NewUsage("models/m", "a", "DOWNLOAD", HOUR, 1), "records[0].model_version"),
        (NewUsage("models/m/versions/1", "", "DOWNLOAD", HOUR, 1), "records[0].principal"),
        (NewUsage("models/m/versions/1", "a", None, HOUR, 1), "records[0].kind"),
        (NewUsage("models/m/versions/1", "a", "DOWNLOAD", None, 1), "records[0].hour_start_time"),
        (
            NewUsage("models/m/versions/1", "a", "DOWNLOAD", HOUR + timedelta(seconds=1), 1),
            "records[0].hour_start_time",
        ),
        (
            NewUsage("models/m/versions/1", "a", "DOWNLOAD", HOUR + timedelta(hours=3), 1),
            "records[0].hour_start_time",
        ),
        (NewUsage("models/m/versions/1", "a", "DOWNLOAD", HOUR, 0), "records[0].count"),
        (NewUsage("models/m/versions/1", "a", "DOWNLOAD", HOUR, 10**13), "records[0].count"),
    ],
)
def test_bad_records_name_their_field(record: NewUsage, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_records([record], NOW)
    assert err.value.violations[0].field == field


def test_batch_ids_are_required_and_bounded() -> None:
    assert check_batch_id("b" * 128) == "b" * 128
    for bad in ("", "b" * 129):
        with pytest.raises(InvalidArgument) as err:
            check_batch_id(bad)
        assert err.value.violations[0].field == "batch_id"


def test_the_filter_compiles_to_parameters_over_the_whitelist() -> None:
    params = SqlParams()
    sql = compile_filter(
        parse('principal = "alice" AND kind = download AND hour_start_time >= "2026-11-01"'),
        USAGE_FIELDS,
        params,
    )
    assert "hour_start" in sql
    assert "alice" not in sql
    assert params.values == ["alice", "DOWNLOAD", datetime(2026, 11, 1, tzinfo=UTC)]
    for bad in ("model = x", "kind = UPLOAD", "count > 3", 'hour_start_time < "soon"'):
        with pytest.raises(InvalidArgument) as err:
            compile_filter(parse(bad), USAGE_FIELDS, SqlParams())
        assert err.value.violations[0].field == "filter"


def test_only_model_version_owners_are_usage() -> None:
    assert model_version_of("models/m/versions/7") == "models/m/versions/7"
    assert model_version_of("experiments/e/runs/r") is None
    assert model_version_of("models/m") is None
    assert model_version_of("models/m/versions/07") is None
