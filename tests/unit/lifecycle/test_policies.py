"""Policy parsing, rule matching and check evaluation: pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg_common.errors import InvalidArgument
from modelreg_lifecycle.domain.models import Target, TargetKind, VersionInfo
from modelreg_lifecycle.domain.policies import (
    Policy,
    RuleDraft,
    build_policy,
    check_failure_metadata,
    effective_thresholds,
    failed_checks,
    parse_check,
    parse_comparison,
    requirements,
)

STAGES = ("None", "Staging", "Production", "Archived")
CHAMPION = Target(TargetKind.ALIAS, "champion")
PRODUCTION = Target(TargetKind.STAGE, "Production")


def version(**overrides: object) -> VersionInfo:
    values: dict[str, object] = {
        "name": "models/fraud/versions/3",
        "model": "fraud",
        "version": 3,
        "state": "READY",
        "run": "experiments/e/runs/r",
        "tags": {"validated": "yes"},
        "has_signature": True,
    }
    values.update(overrides)
    return VersionInfo(**values)  # type: ignore[arg-type]


def test_checks_parse() -> None:
    assert parse_check("version.ready", "c").kind == "ready"
    assert parse_check("signature.present", "c").kind == "signature"
    metric = parse_check("metrics.auc >= 0.90", "c")
    assert metric.comparison is not None
    assert (metric.comparison.metric, metric.comparison.op, metric.comparison.value) == (
        "auc",
        ">=",
        0.9,
    )
    assert parse_check("tags.validated", "c").tag == "validated"


@pytest.mark.parametrize(
    "text", ["", "metrics.auc", "metrics.auc >= high", "metrics.auc => 1", "ready", "tags."]
)
def test_bad_checks_name_their_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_check(text, "policy.rules[0].checks[0]")
    assert err.value.violations[0].field == "policy.rules[0].checks[0]"


def test_build_policy_reports_every_problem_with_its_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        build_policy(
            "fraud",
            [
                RuleDraft(aliases=["latest"], checks=["nonsense"], required_approvals=11),
                RuleDraft(stages=["Prod"]),
                RuleDraft(),
            ],
            ["accuracy >> 1"],
            STAGES,
        )
    fields = {v.field for v in err.value.violations}
    assert fields == {
        "policy.rules[0].aliases[0]",
        "policy.rules[0].checks[0]",
        "policy.rules[0].required_approvals",
        "policy.rules[1].stages[0]",
        "policy.rules[2]",
        "policy.production_thresholds[0]",
    }


def test_registry_and_model_rules_combine_strictest() -> None:
    registry = build_policy("", [RuleDraft(aliases=["*"], checks=["version.ready"])], [], STAGES)
    model = build_policy(
        "fraud",
        [
            RuleDraft(
                aliases=["champion"],
                protected=True,
                required_approvals=2,
                approver_role="owner",
                checks=["metrics.auc >= 0.9", "version.ready"],
            )
        ],
        [],
        STAGES,
    )
    reqs = requirements([registry, model], CHAMPION)
    assert reqs.protected
    assert reqs.required_approvals == 2
    assert reqs.approver_roles == ("approver", "owner")
    assert [c.text for c in reqs.checks] == ["version.ready", "metrics.auc >= 0.9"]
    assert reqs.policies == ("policies/registry", "models/fraud/policy")
    other = requirements([registry, model], Target(TargetKind.ALIAS, "challenger"))
    assert not other.protected
    assert [c.text for c in other.checks] == ["version.ready"]
    assert not requirements([registry, model], PRODUCTION).checks


def test_zero_required_approvals_means_one() -> None:
    policy = build_policy("", [RuleDraft(stages=["Production"], protected=True)], [], STAGES)
    assert requirements([policy], PRODUCTION).required_approvals == 1


def test_failed_checks_explain_each_failure() -> None:
    checks = [
        parse_check(t, "c")
        for t in [
            "version.ready",
            "signature.present",
            "metrics.auc >= 0.90",
            "metrics.loss < 0.1",
            "tags.validated",
            "tags.reviewed",
        ]
    ]
    failures = failed_checks(
        checks, version(state="PENDING_REGISTRATION", has_signature=False), {"auc": 0.85}
    )
    assert failures == [
        ("version.ready", "version state is PENDING_REGISTRATION"),
        ("signature.present", "the version has no signature"),
        ("metrics.auc >= 0.90", "auc is 0.85"),
        ("metrics.loss < 0.1", "the source run has no metric 'loss'"),
        ("tags.reviewed", "tag 'reviewed' is not set"),
    ]
    meta = check_failure_metadata(failures)
    assert meta["failed_checks"].startswith("version.ready; signature.present")
    assert meta["check.2"] == "metrics.auc >= 0.90: auc is 0.85"


def test_metric_thresholds_are_inclusive_where_the_operator_says() -> None:
    check = [parse_check("metrics.auc >= 0.90", "c")]
    assert failed_checks(check, version(), {"auc": 0.90}) == []
    assert failed_checks(check, version(), {"auc": 0.8999}) != []
    assert failed_checks(check, version(run=""), None) == [
        ("metrics.auc >= 0.90", "the version has no source run")
    ]


def test_model_thresholds_override_registry_per_metric() -> None:
    registry = Policy(
        "",
        thresholds=(
            parse_comparison("accuracy >= 0.8", "t"),
            parse_comparison("latency_ms <= 100", "t"),
        ),
    )
    model = Policy("fraud", thresholds=(parse_comparison("accuracy >= 0.9", "t"),))
    found = effective_thresholds([model, registry])
    assert str(found["accuracy"]) == "accuracy >= 0.9"
    assert str(found["latency_ms"]) == "latency_ms <= 100"
    assert not found["accuracy"].holds(0.85)


@given(st.text(max_size=200))
@settings(max_examples=300, derandomize=True)
def test_any_check_text_parses_or_is_invalid_argument(text: str) -> None:
    try:
        check = parse_check(text, "c")
    except InvalidArgument as err:
        fields = [v.field for v in err.violations]
        assert fields == ["c"]
    else:
        assert check.kind in {"ready", "signature", "metric", "tag"}
