"""Promotion policies: rules over aliases and stages, their checks, and production thresholds.

The format is documented in docs/policies.md. Everything here is pure: parsing, matching a
target to the rules that cover it, and evaluating checks against what metadata reported.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from modelreg_common.errors import FieldViolation, InvalidArgument
from modelreg_lifecycle.domain.models import Target, TargetKind, VersionInfo
from modelreg_lifecycle.domain.names import check_alias

DEFAULT_APPROVER_ROLE = "approver"
# Roles that may review (modelreg.metadata.v1.Role): reviewing needs at least approver.
APPROVER_ROLES = ("approver", "owner", "admin")
MAX_APPROVALS = 10
MAX_RULES = 100
MAX_CHECKS = 50

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_METRIC_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,249}"
_NUMBER = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_COMPARISON = re.compile(rf"^\s*({_METRIC_NAME})\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
_METRIC_CHECK = re.compile(rf"^\s*metrics\.({_METRIC_NAME})\s*(>=|<=|==|!=|>|<)\s*({_NUMBER})\s*$")
_TAG_CHECK = re.compile(r"^\s*tags\.([^\s]{1,250})\s*$")


@dataclass(frozen=True)
class Comparison:
    """`<metric> <op> <number>`: the condition that must hold."""

    metric: str
    op: str
    value: float

    def holds(self, actual: float) -> bool:
        return _OPS[self.op](actual, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def parse_comparison(text: str, field: str) -> Comparison:
    match = _COMPARISON.match(text)
    if match is None:
        raise InvalidArgument(
            field, f"expected '<metric> <op> <number>' with op one of >= > <= < == !=; got {text!r}"
        )
    return Comparison(match[1], match[2], float(match[3]))


@dataclass(frozen=True)
class Check:
    """One required check: `version.ready`, `signature.present`, `metrics.<m> <op> <n>`,
    `tags.<key>`."""

    text: str
    kind: str  # ready | signature | metric | tag
    comparison: Comparison | None = None
    tag: str = ""


def parse_check(text: str, field: str) -> Check:
    stripped = text.strip()
    if stripped == "version.ready":
        return Check(stripped, "ready")
    if stripped == "signature.present":
        return Check(stripped, "signature")
    metric = _METRIC_CHECK.match(stripped)
    if metric is not None:
        return Check(stripped, "metric", Comparison(metric[1], metric[2], float(metric[3])))
    tag = _TAG_CHECK.match(stripped)
    if tag is not None:
        return Check(stripped, "tag", tag=tag[1])
    raise InvalidArgument(
        field,
        "a check is one of 'version.ready', 'signature.present', "
        f"'metrics.<name> <op> <number>', 'tags.<key>'; got {text[:200]!r}",
    )


@dataclass(frozen=True)
class Rule:
    aliases: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    protected: bool = False
    required_approvals: int = 1
    approver_role: str = DEFAULT_APPROVER_ROLE
    checks: tuple[Check, ...] = ()

    def covers(self, target: Target) -> bool:
        names = self.aliases if target.kind is TargetKind.ALIAS else self.stages
        return "*" in names or target.name in names


@dataclass(frozen=True)
class Policy:
    scope: str  # a model id, or "" for the registry
    rules: tuple[Rule, ...] = ()
    thresholds: tuple[Comparison, ...] = ()
    revision: int = 0
    updater: str = ""
    update_time: datetime | None = None


@dataclass(frozen=True)
class RuleDraft:
    """A rule as the caller sent it, before validation."""

    aliases: Sequence[str] = ()
    stages: Sequence[str] = ()
    protected: bool = False
    required_approvals: int = 0
    approver_role: str = ""
    checks: Sequence[str] = ()


def build_policy(
    scope: str,
    rules: Sequence[RuleDraft],
    thresholds: Sequence[str],
    stages: Sequence[str],
    *,
    field: str = "policy",
) -> Policy:
    """Validate a policy as sent; every problem is reported, each naming its field."""
    violations: list[FieldViolation] = []

    def guard(parse: Callable[[str, str], object], value: str, at: str) -> object:
        try:
            return parse(value, at)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            return None

    def alias_or_wildcard(value: str, at: str) -> str:
        return check_alias(value, at, allow_wildcard=True)

    if len(rules) > MAX_RULES:
        raise InvalidArgument(f"{field}.rules", f"at most {MAX_RULES} rules")
    built: list[Rule] = []
    for i, draft in enumerate(rules):
        at = f"{field}.rules[{i}]"
        for j, alias in enumerate(draft.aliases):
            guard(alias_or_wildcard, alias, f"{at}.aliases[{j}]")
        for j, stage in enumerate(draft.stages):
            if stage != "*" and stage not in stages:
                violations.append(
                    FieldViolation(
                        f"{at}.stages[{j}]",
                        f"unknown stage {stage[:100]!r}; configured: {', '.join(stages)}",
                    )
                )
        if not draft.aliases and not draft.stages:
            violations.append(FieldViolation(at, "a rule covers at least one alias or stage"))
        if not 0 <= draft.required_approvals <= MAX_APPROVALS:
            violations.append(
                FieldViolation(f"{at}.required_approvals", f"must be 0..{MAX_APPROVALS}")
            )
        role = draft.approver_role or DEFAULT_APPROVER_ROLE
        if role not in APPROVER_ROLES:
            violations.append(
                FieldViolation(f"{at}.approver_role", f"one of {', '.join(APPROVER_ROLES)}")
            )
        if len(draft.checks) > MAX_CHECKS:
            violations.append(FieldViolation(f"{at}.checks", f"at most {MAX_CHECKS} checks"))
        checks = [guard(parse_check, c, f"{at}.checks[{j}]") for j, c in enumerate(draft.checks)]
        built.append(
            Rule(
                aliases=tuple(draft.aliases),
                stages=tuple(draft.stages),
                protected=draft.protected,
                required_approvals=max(1, draft.required_approvals),
                approver_role=role,
                checks=tuple(c for c in checks if isinstance(c, Check)),
            )
        )
    parsed: list[Comparison] = []
    seen: set[str] = set()
    for i, text in enumerate(thresholds):
        at = f"{field}.production_thresholds[{i}]"
        comparison = guard(parse_comparison, text, at)
        if isinstance(comparison, Comparison):
            if comparison.metric in seen:
                violations.append(
                    FieldViolation(at, f"a second threshold on {comparison.metric!r}")
                )
            seen.add(comparison.metric)
            parsed.append(comparison)
    if violations:
        raise InvalidArgument.of(violations)
    return Policy(scope=scope, rules=tuple(built), thresholds=tuple(parsed))


@dataclass(frozen=True)
class Requirements:
    """What every rule covering one target demands, combined (the strictest wins)."""

    protected: bool = False
    required_approvals: int = 1
    approver_roles: tuple[str, ...] = (DEFAULT_APPROVER_ROLE,)
    checks: tuple[Check, ...] = ()
    policies: tuple[str, ...] = field(default_factory=tuple)


def requirements(policies: Sequence[Policy], target: Target) -> Requirements:
    """Registry-wide and model rules both apply: a model cannot loosen the registry's rules."""
    from modelreg_lifecycle.domain.names import policy_name

    protected = False
    approvals = 1
    roles: list[str] = []
    checks: dict[str, Check] = {}
    sources: list[str] = []
    for policy in policies:
        for rule in policy.rules:
            if not rule.covers(target):
                continue
            protected = protected or rule.protected
            approvals = max(approvals, rule.required_approvals)
            if rule.approver_role not in roles:
                roles.append(rule.approver_role)
            for check in rule.checks:
                checks.setdefault(check.text, check)
            name = policy_name(policy.scope)
            if name not in sources:
                sources.append(name)
    return Requirements(
        protected=protected,
        required_approvals=approvals,
        approver_roles=tuple(roles) or (DEFAULT_APPROVER_ROLE,),
        checks=tuple(checks.values()),
        policies=tuple(sources),
    )


def needs_run_metrics(checks: Sequence[Check]) -> bool:
    return any(c.kind == "metric" for c in checks)


def failed_checks(
    checks: Sequence[Check], version: VersionInfo, run_metrics: Mapping[str, float] | None
) -> list[tuple[str, str]]:
    """(check, why it failed) for each failing check, in order."""
    failures: list[tuple[str, str]] = []
    for check in checks:
        if check.kind == "ready":
            if not version.ready:
                failures.append((check.text, f"version state is {version.state}"))
        elif check.kind == "signature":
            if not version.has_signature:
                failures.append((check.text, "the version has no signature"))
        elif check.kind == "tag":
            if check.tag not in version.tags:
                failures.append((check.text, f"tag {check.tag!r} is not set"))
        elif check.kind == "metric":
            assert check.comparison is not None
            metric = check.comparison.metric
            if not version.run:
                failures.append((check.text, "the version has no source run"))
            elif run_metrics is None or metric not in run_metrics:
                failures.append((check.text, f"the source run has no metric {metric!r}"))
            elif not check.comparison.holds(run_metrics[metric]):
                failures.append((check.text, f"{metric} is {run_metrics[metric]:g}"))
    return failures


def check_failure_metadata(failures: Sequence[tuple[str, str]]) -> dict[str, str]:
    """ErrorInfo metadata: `failed_checks` lists them; `check.<i>` says why each failed."""
    meta = {"failed_checks": "; ".join(text for text, _ in failures)}
    for i, (text, why) in enumerate(failures):
        meta[f"check.{i}"] = f"{text}: {why}"
    return meta


def effective_thresholds(policies: Sequence[Policy]) -> dict[str, Comparison]:
    """Per metric: the model's threshold if it has one, else the registry's."""
    ordered = sorted(policies, key=lambda p: p.scope != "")  # registry first, model overrides
    found: dict[str, Comparison] = {}
    for policy in ordered:
        for threshold in policy.thresholds:
            found[threshold.metric] = threshold
    return found


def check_metric_value(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")
    return value


def check_metric_name(name: str, field: str) -> str:
    if not re.fullmatch(_METRIC_NAME, name):
        raise InvalidArgument(
            field, f"1-250 letters, digits, '_', '.', '-' or '/'; got {name[:200]!r}"
        )
    return name
