"""`modelreg audit report <model>`: one document about a model for reviewers and regulators,
assembled only from public RPCs: versions with their runs and lineage, every transition
request with its approvals and the policy checks that applied, alias and stage history,
deployments (with lineage back to the data), production metrics, usage and the event trail."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from modelreg.client.errors import NotFoundError, RegistryError
from modelreg.lifecycle.v1 import policy_pb2
from modelreg.metadata.v1 import lineage_pb2

Report = dict[str, Any]

# What the registry does not record (yet), said in the report instead of left out silently.
GAPS = [
    "production metric values are taken from production_metrics.recorded events; "
    "there is no ListProductionMetrics RPC",
]


def _dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _all(call: Callable[..., Any], field: str, **request: Any) -> Iterator[Any]:
    token = ""
    while True:
        page = call(page_token=token, **request)
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return


def _lineage(r: Any, start: str) -> dict[str, Any]:
    if not start:
        return {"nodes": [], "edges": []}
    try:
        graph = r.metadata.get_lineage(
            start=start, direction=lineage_pb2.LINEAGE_DIRECTION_UPSTREAM, max_hops=6
        )
    except NotFoundError:
        return {"nodes": [], "edges": [], "error": f"{start} is not a lineage node"}
    return {
        "nodes": [_dict(n) for n in graph.nodes],
        "edges": [_dict(e) for e in graph.edges],
        "truncated": graph.truncated,
    }


def _policies(r: Any, model: str) -> list[policy_pb2.Policy]:
    found = []
    for name in (f"{model}/policy", "policies/registry"):
        try:
            found.append(r.lifecycle.get_policy(name=name).policy)
        except NotFoundError:
            continue
    return found


def _rules_for(policies: list[policy_pb2.Policy], alias: str, stage: str) -> list[dict[str, Any]]:
    """The rules that govern a move to this alias or stage, with the policy they come from."""
    rules = []
    for policy in policies:
        for rule in policy.rules:
            covered = (alias and (alias in rule.aliases or "*" in rule.aliases)) or (
                stage and (stage in rule.stages or "*" in rule.stages)
            )
            if covered:
                rules.append({"policy": policy.name, **_dict(rule)})
    return rules


def _events(r: Any, model: str) -> list[dict[str, Any]]:
    """The model's events (its own subject and every subject under it), oldest first."""
    seen: dict[int, dict[str, Any]] = {}
    for flt in (f'subject = "{model}"', f'subject = "{model}/*"'):
        for event in _all(r.events.list_events, "events", filter=flt, page_size=1000):
            seen[event.sequence] = _dict(event)
    return [seen[s] for s in sorted(seen)]


def build_report(r: Any, model: str) -> Report:
    """The report as JSON-ready data; `r` is a `Registry`."""
    registered = r.metadata.get_registered_model(name=model).registered_model
    policies = _policies(r, model)
    versions = []
    for version in _all(
        r.metadata.list_model_versions,
        "model_versions",
        parent=model,
        page_size=1000,
        order_by="create_time",
    ):
        entry: dict[str, Any] = {"version": _dict(version)}
        if version.run:
            try:
                entry["run"] = _dict(r.metadata.get_run(name=version.run).run)
            except RegistryError as err:
                entry["run"] = {"name": version.run, "error": str(err)}
        with contextlib.suppress(RegistryError):
            entry["stage"] = _dict(r.lifecycle.get_version_stage(name=version.name).version_stage)
        entry["lineage"] = _lineage(r, version.name)
        versions.append(entry)
    aliases = []
    for alias in _all(r.lifecycle.list_aliases, "aliases", parent=model, page_size=1000):
        history = _all(r.lifecycle.list_alias_history, "entries", name=alias.name, page_size=1000)
        aliases.append({"alias": _dict(alias), "history": [_dict(h) for h in history]})
    requests = []
    for request in _all(
        r.lifecycle.list_transition_requests, "transition_requests", parent=model, page_size=1000
    ):
        target_alias = request.alias if request.WhichOneof("target") == "alias" else ""
        target_stage = request.stage if request.WhichOneof("target") == "stage" else ""
        requests.append(
            {"request": _dict(request), "rules": _rules_for(policies, target_alias, target_stage)}
        )
    deployments = []
    for deployment in _all(
        r.lifecycle.list_deployments, "deployments", parent=model, page_size=1000
    ):
        deployments.append(
            {"deployment": _dict(deployment), "lineage": _lineage(r, deployment.lineage_node)}
        )
    events = _events(r, model)
    try:
        usage: list[dict[str, Any]] | dict[str, str] = [
            _dict(u)
            for u in _all(r.events.list_usage, "usage_records", parent=model, page_size=1000)
        ]
    except RegistryError as err:
        # Said in the report rather than failing it: the rest stands on its own.
        usage = {"error": str(err)}
    return {
        "model": _dict(registered),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "policies": [_dict(p) for p in policies],
        "versions": versions,
        "aliases": aliases,
        "transition_requests": requests,
        "stage_history": [
            _dict(h)
            for h in _all(r.lifecycle.list_stage_history, "entries", parent=model, page_size=1000)
        ],
        "deployments": deployments,
        "production_metrics": {
            "recorded": [
                {
                    "time": e.get("time"),
                    "version": e.get("subject"),
                    "actor": e.get("actor"),
                    **e.get("data", {}),
                }
                for e in events
                if e.get("type") == "production_metrics.recorded"
            ],
            "degradations": [
                _dict(d)
                for d in _all(
                    r.lifecycle.list_degradations, "degradations", parent=model, page_size=1000
                )
            ],
        },
        "events": [
            {k: e.get(k) for k in ("sequence", "time", "type", "subject", "actor", "request_id")}
            for e in events
        ],
        # Downloads and alias resolutions per principal, version and hour (usage records).
        "usage": usage,
        "not_recorded": GAPS,
    }


# -- Markdown -------------------------------------------------------------------------------


def _md(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md(row.get(c)) for c in columns) + " |" for row in rows]
    return [*lines, ""]


def _strip(value: Any, prefix: str) -> Any:
    return value.removeprefix(prefix) if isinstance(value, str) else value


def render_markdown(report: Report) -> str:
    model = report["model"]
    lines = [
        f"# Audit report: {model['name']}",
        "",
        f"Generated {report['generated_at']}. Created by {model.get('created_by', '?')} "
        f"at {model.get('create_time', '?')}; {len(report['versions'])} version(s).",
        "",
    ]
    if model.get("description"):
        lines += [model["description"], ""]

    lines += ["## Policies", ""]
    rules = [
        {"policy": p["name"], **rule} for p in report["policies"] for rule in p.get("rules", [])
    ]
    lines += _table(
        rules, ["policy", "aliases", "stages", "protected", "required_approvals", "checks"]
    )
    thresholds = [t for p in report["policies"] for t in p.get("production_thresholds", [])]
    if thresholds:
        lines += [f"Production thresholds: {', '.join(thresholds)}", ""]

    lines += ["## Versions", ""]
    for entry in report["versions"]:
        v = entry["version"]
        lines += [
            f"### {v['name']}",
            "",
            f"- state: {_strip(v.get('state'), 'MODEL_VERSION_STATE_')}",
            f"- created by {v.get('created_by', '')} at {v.get('create_time', '')}",
            f"- artifact: {v.get('artifact_digest', '')} "
            f"({v.get('artifact_file_count', 0)} file(s), {v.get('artifact_size_bytes', 0)} bytes)",
            f"- stage: {entry.get('stage', {}).get('stage', '')}",
            f"- signature: {json.dumps(v['signature']) if v.get('signature') else 'none'}",
            f"- tags: {_md(v.get('tags', {}))}",
        ]
        run = entry.get("run")
        if run:
            lines += [
                f"- run: {run.get('name')} ({_strip(run.get('status'), 'RUN_STATUS_')})",
                f"  - params: {_md(run.get('params', {}))}",
                f"  - metrics: {_md(run.get('latest_metrics', {}))}",
                "  - datasets: "
                + _md([f"{i.get('name')}@{i.get('digest', '')}" for i in run.get("inputs", [])]),
            ]
        lines.append("")
        lines += ["Lineage (upstream):", ""]
        lines += _table(entry["lineage"]["edges"], ["source", "type", "target"])

    lines += ["## Transition requests and approvals", ""]
    for item in report["transition_requests"]:
        req = item["request"]
        target = (req.get("alias") and f"alias {req['alias']}") or f"stage {req.get('stage')}"
        lines += [
            f"### {req['name']}",
            "",
            f"- {target} -> {req.get('version')}; state "
            f"{_strip(req.get('state'), 'TRANSITION_REQUEST_STATE_')}",
            f"- requested by {req.get('requester')} at {req.get('create_time')}: "
            f"{req.get('comment', '')}",
            f"- approvals ({len(req.get('approvals', []))} of "
            f"{req.get('required_approvals', 0)} required):",
        ]
        lines += [
            f"  - {a.get('reviewer')} at {a.get('time')}: {a.get('comment', '')}"
            for a in req.get("approvals", [])
        ]
        if req.get("closing_review"):
            review = req["closing_review"]
            lines.append(f"- closed by {review.get('reviewer')}: {review.get('comment', '')}")
        if req.get("failure_reason"):
            lines.append(f"- failed: {req['failure_reason']}")
        checks = [c for rule in item["rules"] for c in rule.get("checks", [])]
        lines.append(f"- checks applied: {', '.join(checks) if checks else 'none'}")
        lines.append("")

    lines += ["## Alias history", ""]
    for item in report["aliases"]:
        alias = item["alias"]
        lines += [f"### {alias['name']} -> {alias.get('version')}", ""]
        history = [
            {**h, "action": _strip(h.get("action"), "ALIAS_ACTION_")} for h in item["history"]
        ]
        lines += _table(
            history,
            ["time", "action", "from_version", "to_version", "actor", "reason",
             "transition_request"],
        )  # fmt: skip

    lines += ["## Stage history", ""]
    lines += _table(
        report["stage_history"], ["time", "version", "from_stage", "to_stage", "actor", "reason"]
    )

    lines += ["## Deployments", ""]
    for item in report["deployments"]:
        d = item["deployment"]
        lines += [
            f"### {d['name']}",
            "",
            f"- {d.get('version')} in {d.get('environment')} at {d.get('endpoint', '')}; "
            f"{_strip(d.get('status'), 'DEPLOYMENT_STATUS_')}",
            f"- recorded by {d.get('recorder')} at {d.get('create_time')}"
            + (f", ended {d['end_time']}" if d.get("end_time") else ""),
            "",
            "Lineage (upstream):",
            "",
        ]
        lines += _table(item["lineage"]["edges"], ["source", "type", "target"])

    lines += ["## Production metrics", ""]
    lines += _table(
        report["production_metrics"]["recorded"],
        ["time", "version", "environment", "metrics", "actor"],
    )
    lines += ["Degradations:", ""]
    lines += _table(
        report["production_metrics"]["degradations"],
        ["version", "environment", "metric", "threshold", "value", "start_time", "end_time"],
    )

    lines += ["## Usage", ""]
    usage = report.get("usage", [])
    if isinstance(usage, dict):
        lines += [f"Could not be read: {usage.get('error', '')}", ""]
    else:
        lines += _table(
            [{**u, "kind": _strip(u.get("kind"), "USAGE_KIND_")} for u in usage],
            ["hour_start_time", "model_version", "principal", "kind", "count"],
        )

    lines += ["## Event trail", ""]
    lines += _table(
        report["events"], ["sequence", "time", "type", "subject", "actor", "request_id"]
    )
    lines += ["## Not recorded", ""]
    lines += [f"- {gap}" for gap in report["not_recorded"]]
    return "\n".join(lines)
