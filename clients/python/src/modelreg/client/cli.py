"""The `modelreg` client commands: models, versions, alias, requests, deployments, events,
webhooks, audit, keys (API keys) and policy (access grants). Human tables by default, `--json`
for scripts. The exit code is the gRPC status code number of a refused call (5 NOT_FOUND,
9 FAILED_PRECONDITION, ...), 0 on success; a usage mistake is 3 (INVALID_ARGUMENT), a local
file that is missing 5, a digest mismatch 15 (DATA_LOSS).

    modelreg models list --target 127.0.0.1:50051
    MODELREG_TOKEN=... modelreg versions register fraud ./model --run experiments/e/runs/r1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelreg.client.audit import build_report, render_markdown
from modelreg.client.errors import AbortedError, RegistryError
from modelreg.client.helpers import DigestMismatch, model_name, version_name
from modelreg.client.registry import Registry
from modelreg.lifecycle.v1 import deployment_pb2, transition_request_pb2
from modelreg.metadata.v1 import access_pb2, lineage_pb2

COMMANDS = (
    "models",
    "versions",
    "alias",
    "requests",
    "deployments",
    "policies",
    "metrics",
    "lineage",
    "events",
    "webhooks",
    "audit",
    "keys",
    "access",
    "usage",
)
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
DATA_LOSS = grpc.StatusCode.DATA_LOSS.value[0]


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(INVALID_ARGUMENT, f"{self.prog}: error: {message}\n")


# -- output ---------------------------------------------------------------------------------


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def _enum(value: str, prefix: str) -> str:
    return value.removeprefix(prefix) if isinstance(value, str) else value


class Output:
    def __init__(self, as_json: bool, stream: TextIO) -> None:
        self.as_json = as_json
        self.stream = stream

    def line(self, text: str) -> None:
        print(text, file=self.stream)

    def message(self, message: Message, fields: Sequence[str] | None = None) -> None:
        data = to_dict(message)
        if self.as_json:
            self.line(json.dumps(data, indent=2, sort_keys=True))
            return
        keys = fields or list(data)
        width = max((len(k) for k in keys), default=0)
        for key in keys:
            if key in data:
                self.line(f"{key.ljust(width)}  {_cell(data[key])}")

    def table(
        self,
        items: Iterable[Message],
        columns: Sequence[str],
        *,
        strip: Sequence[str] = (),
    ) -> None:
        rows = [to_dict(item) for item in items]
        if self.as_json:
            self.line(json.dumps(rows, indent=2, sort_keys=True))
            return
        cells = []
        for row in rows:
            values = []
            for column in columns:
                value = _cell(row.get(column))
                for prefix in strip:
                    value = value.removeprefix(prefix)
                values.append(value)
            cells.append(values)
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        self.line("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
        for values in cells:
            self.line("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip())
        if not rows:
            self.line("(none)")


def _progress(label: str) -> Callable[[str, int, int], None]:
    """A one-line progress indicator on stderr (only when stderr is a terminal)."""
    interactive = sys.stderr.isatty()

    def report(path: str, done: int, total: int) -> None:
        if not interactive:
            return
        percent = 100 * done // total if total else 100
        sys.stderr.write(f"\r{label} {percent:3d}% {done}/{total} bytes  {path[-40:]:<40}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _pages(call: Callable[..., Any], field: str, limit: int, **request: Any) -> Iterator[Any]:
    """Every item over pages, at most `limit` (0: all)."""
    token = ""
    count = 0
    while True:
        page = call(page_token=token, **request)
        for item in getattr(page, field):
            yield item
            count += 1
            if limit and count >= limit:
                return
        token = page.next_page_token
        if not token:
            return


def _tags(pairs: Sequence[str] | None) -> dict[str, str]:
    tags = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag takes key=value, got {pair!r}")
        tags[key] = value
    return tags


# -- commands -------------------------------------------------------------------------------


def models_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.metadata.list_registered_models, "registered_models", a.limit,
        filter=a.filter, order_by=a.order_by, page_size=min(a.limit or 1000, 1000),
    )  # fmt: skip
    out.table(items, ["name", "latest_version", "created_by", "update_time", "description"])


def models_show(r: Registry, out: Output, a: argparse.Namespace) -> None:
    model = r.metadata.get_registered_model(name=model_name(a.model)).registered_model
    out.message(model)
    if not out.as_json:
        aliases = r.lifecycle.list_aliases(parent=model.name, page_size=1000).aliases
        out.line("")
        out.table(aliases, ["name", "version", "updater", "update_time"])


def models_create(r: Registry, out: Output, a: argparse.Namespace) -> None:
    created = r.metadata.create_registered_model(
        registered_model_id=model_name(a.model).removeprefix("models/"),
        registered_model={"description": a.description, "tags": _tags(a.tag)},
    ).registered_model
    out.message(created)


def models_delete(r: Registry, out: Output, a: argparse.Namespace) -> None:
    reply = r.metadata.delete_registered_model(name=model_name(a.model), force=a.force)
    if out.as_json:
        out.message(reply)
    else:
        out.line(f"deleted {model_name(a.model)} ({reply.deleted_versions} version(s))")


VERSION_COLUMNS = ["name", "state", "run", "artifact_digest", "created_by", "create_time"]


def versions_register(r: Registry, out: Output, a: argparse.Namespace) -> None:
    signature = None
    if a.signature:
        text = a.signature
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as handle:
                text = handle.read()
        try:
            signature = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--signature is not JSON: {exc}") from None
    version = r.register_model(
        a.model, a.path, run=a.run, signature=signature, tags=_tags(a.tag),
        description=a.description, source=a.source, progress=_progress("upload"),
    )  # fmt: skip
    out.message(version)


def versions_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.metadata.list_model_versions, "model_versions", a.limit,
        parent=model_name(a.model), filter=a.filter, order_by=a.order_by,
        page_size=min(a.limit or 1000, 1000),
    )  # fmt: skip
    out.table(items, VERSION_COLUMNS, strip=["MODEL_VERSION_STATE_"])


def versions_show(r: Registry, out: Output, a: argparse.Namespace) -> None:
    reference = a.reference if a.version is None else version_name(a.reference, a.version)
    out.message(r.resolve(reference))


def versions_download(r: Registry, out: Output, a: argparse.Namespace) -> None:
    version = r.download(a.reference, a.dest, progress=_progress("download"))
    if out.as_json:
        out.message(version)
    else:
        out.line(f"downloaded {version.name} ({version.artifact_file_count} file(s)) to {a.dest}")


def alias_set(r: Registry, out: Output, a: argparse.Namespace) -> None:
    done = r.promote(a.model, a.version, a.alias, reason=a.reason)
    if done.alias is not None:
        out.message(done.alias)
    elif done.transition_request is not None:
        if not out.as_json:
            out.line(f"the alias {a.alias} is protected: opened a transition request")
        out.message(done.transition_request)


def alias_delete(r: Registry, out: Output, a: argparse.Namespace) -> None:
    name = f"{model_name(a.model)}/aliases/{a.alias}"
    r.lifecycle.delete_alias(name=name, reason=a.reason)
    out.line(json.dumps({"deleted": name}) if out.as_json else f"deleted {name}")


def alias_history(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.lifecycle.list_alias_history, "entries", a.limit,
        name=f"{model_name(a.model)}/aliases/{a.alias}", page_size=1000,
    )  # fmt: skip
    out.table(
        items,
        ["time", "action", "from_version", "to_version", "actor", "reason", "transition_request"],
        strip=["ALIAS_ACTION_"],
    )


REQUEST_COLUMNS = ["name", "version", "alias", "stage", "state", "requester", "create_time"]


def requests_create(r: Registry, out: Output, a: argparse.Namespace) -> None:
    if bool(a.alias) == bool(a.stage):
        raise UsageError("give exactly one of --alias and --stage")
    target = {"alias": a.alias} if a.alias else {"stage": a.stage}
    created = r.lifecycle.create_transition_request(
        parent=model_name(a.model),
        transition_request={
            "version": version_name(a.model, a.version), "comment": a.comment, **target
        },
    ).transition_request  # fmt: skip
    out.message(created)


def requests_approve(r: Registry, out: Output, a: argparse.Namespace) -> None:
    out.message(
        r.lifecycle.approve_transition_request(name=a.name, comment=a.comment).transition_request
    )


def requests_reject(r: Registry, out: Output, a: argparse.Namespace) -> None:
    out.message(
        r.lifecycle.reject_transition_request(name=a.name, comment=a.comment).transition_request
    )


def requests_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    state = 0
    if a.state:
        try:
            state = transition_request_pb2.TransitionRequestState.Value(
                f"TRANSITION_REQUEST_STATE_{a.state.upper()}"
            )
        except ValueError:
            raise UsageError(f"unknown state {a.state!r}") from None
    items = _pages(
        r.lifecycle.list_transition_requests, "transition_requests", a.limit,
        parent=model_name(a.model), state=state, page_size=1000,
    )  # fmt: skip
    out.table(items, REQUEST_COLUMNS, strip=["TRANSITION_REQUEST_STATE_"])


def deployments_record(r: Registry, out: Output, a: argparse.Namespace) -> None:
    try:
        status = deployment_pb2.DeploymentStatus.Value(f"DEPLOYMENT_STATUS_{a.status.upper()}")
    except ValueError:
        raise UsageError(f"unknown status {a.status!r}") from None
    recorded = r.lifecycle.record_deployment(
        parent=model_name(a.model),
        deployment={
            "version": version_name(a.model, a.version), "environment": a.environment,
            "endpoint": a.endpoint, "status": status,
        },
    ).deployment  # fmt: skip
    out.message(recorded)


def alias_rollback(r: Registry, out: Output, a: argparse.Namespace) -> None:
    reply = r.lifecycle.rollback_alias(
        name=f"{model_name(a.model)}/aliases/{a.alias}", reason=a.reason
    )
    if reply.HasField("alias"):
        out.message(reply.alias)
        return
    if not out.as_json:
        out.line(f"the alias {a.alias} is protected: opened a transition request")
    out.message(reply.transition_request)


def policies_set(r: Registry, out: Output, a: argparse.Namespace) -> None:
    rules = []
    if a.protect or a.check:
        rules.append(
            {
                "aliases": a.protect or ["*"], "protected": bool(a.protect),
                "required_approvals": a.approvals, "checks": a.check or [],
            }
        )  # fmt: skip
    name = "policies/registry" if a.model == "registry" else f"{model_name(a.model)}/policy"
    policy = r.lifecycle.set_policy(
        policy={"name": name, "rules": rules, "production_thresholds": a.threshold or []}
    ).policy
    out.message(policy)


def policies_show(r: Registry, out: Output, a: argparse.Namespace) -> None:
    name = "policies/registry" if a.model == "registry" else f"{model_name(a.model)}/policy"
    out.message(r.lifecycle.get_policy(name=name).policy)


def metrics_record(r: Registry, out: Output, a: argparse.Namespace) -> None:
    values = []
    for pair in a.values:
        key, sep, value = pair.partition("=")
        try:
            values.append({"metric": key, "value": float(value)})
        except ValueError:
            raise UsageError(f"metrics take name=number, got {pair!r}") from None
        if not sep or not key:
            raise UsageError(f"metrics take name=number, got {pair!r}")
    reply = r.lifecycle.record_production_metrics(
        version=version_name(a.model, a.version), environment=a.environment, metrics=values
    )
    if out.as_json:
        out.message(reply)
        return
    out.line(f"recorded {len(reply.metrics)} value(s)")
    for episode in reply.opened:
        out.line(
            f"DEGRADED: {episode.metric} = {episode.value:g} breaks {episode.threshold} "
            f"({episode.environment})"
        )


def lineage_show(r: Registry, out: Output, a: argparse.Namespace) -> None:
    key = f"LINEAGE_DIRECTION_{a.direction.upper()}"
    try:
        direction = lineage_pb2.LineageDirection.Value(key)
    except ValueError:
        raise UsageError(f"unknown direction {a.direction!r}") from None
    graph = r.metadata.get_lineage(start=a.name, direction=direction, max_hops=a.hops)
    if out.as_json:
        out.message(graph)
        return
    out.table(graph.nodes, ["name", "type", "display_name"], strip=["LINEAGE_NODE_TYPE_"])
    out.line("")
    out.table(graph.edges, ["source", "type", "target"], strip=["LINEAGE_EDGE_TYPE_"])


def deployments_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.lifecycle.list_deployments, "deployments", a.limit,
        parent=model_name(a.model), environment=a.environment, current_only=a.current,
        page_size=1000,
    )  # fmt: skip
    out.table(
        items,
        ["name", "version", "environment", "endpoint", "status", "recorder", "create_time"],
        strip=["DEPLOYMENT_STATUS_"],
    )


def usage_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    parent = model_name(a.model) + (f"/versions/{a.version}" if a.version else "")
    items = _pages(
        r.events.list_usage, "usage_records", a.limit,
        parent=parent, filter=a.filter, page_size=1000,
    )  # fmt: skip
    out.table(
        items,
        ["hour_start_time", "model_version", "principal", "kind", "count"],
        strip=["USAGE_KIND_"],
    )


def _event_line(event: Message) -> str:
    return json.dumps(to_dict(event), sort_keys=True)


def events_tail(r: Registry, out: Output, a: argparse.Namespace) -> None:
    after = a.after if a.after is not None else None
    for count, event in enumerate(r.subscribe(a.filter, after_sequence=after), start=1):
        out.line(_event_line(event))
        out.stream.flush()
        if a.count and count >= a.count:
            return


def events_export(r: Registry, out: Output, a: argparse.Namespace) -> None:
    flt = a.filter
    if a.after:
        flt = f"{flt} AND sequence > {a.after}" if flt else f"sequence > {a.after}"
    for event in _pages(r.events.list_events, "events", a.limit, filter=flt, page_size=1000):
        out.line(_event_line(event))


def webhooks_create(r: Registry, out: Output, a: argparse.Namespace) -> None:
    reply = r.events.create_webhook(
        webhook={
            "url": a.url, "event_types": a.event_type or [], "models": a.model or [],
            "description": a.description,
        },
        webhook_id=a.id,
    )  # fmt: skip
    if out.as_json:
        out.message(reply)
        return
    out.message(reply.webhook)
    out.line(f"secret    {reply.secret}  (shown once: store it to verify deliveries)")


def webhooks_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(r.events.list_webhooks, "webhooks", a.limit, page_size=1000)
    out.table(items, ["name", "url", "state", "event_types", "models"], strip=["WEBHOOK_STATE_"])


def webhooks_deliveries(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.events.list_deliveries, "deliveries", a.limit,
        parent=a.webhook, filter=a.filter, page_size=1000,
    )  # fmt: skip
    out.table(
        items,
        ["event_sequence", "event_type", "state", "attempt_count", "last_status_code",
         "last_error"],
        strip=["DELIVERY_STATE_"],
    )  # fmt: skip


def audit_report(r: Registry, out: Output, a: argparse.Namespace) -> None:
    report = build_report(r, model_name(a.model))
    if out.as_json or a.format == "json":
        text = json.dumps(report, indent=2, sort_keys=True)
    else:
        text = render_markdown(report)
    if a.output:
        with open(a.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
    else:
        out.line(text)


KEY_COLUMNS = [
    "name", "display_name", "principal", "groups", "secret_prefix", "create_time",
    "expire_time", "revoke_time",
]  # fmt: skip


def keys_create(r: Registry, out: Output, a: argparse.Namespace) -> None:
    key = access_pb2.ApiKey(display_name=a.name, principal=a.principal, groups=a.group or [])
    if a.expires_in_days is not None:
        if a.expires_in_days <= 0:
            raise UsageError("--expires-in-days must be a positive number of days")
        expires = Timestamp()
        expires.FromDatetime(datetime.now(UTC) + timedelta(days=a.expires_in_days))
        key.expire_time.CopyFrom(expires)
    reply = r.metadata.create_api_key(api_key=key)
    if not reply.secret:
        # The create committed but its answer was lost, and the retry got the record only:
        # the secret is shown once, so this key can never be used.
        raise UsageError(
            f"{reply.api_key.name} was created but its secret was lost in transit; "
            f"revoke it (modelreg keys revoke {reply.api_key.name}) and create another"
        )
    if out.as_json:
        out.message(reply)
        return
    out.message(reply.api_key, KEY_COLUMNS)
    out.line(f"secret         {reply.secret}")
    out.line("(shown once: store it now; send it as 'authorization: Bearer <secret>')")


def keys_list(r: Registry, out: Output, a: argparse.Namespace) -> None:
    items = _pages(
        r.metadata.list_api_keys, "api_keys", a.limit,
        principal=a.principal, show_revoked=a.all, page_size=min(a.limit or 1000, 1000),
    )  # fmt: skip
    out.table(items, KEY_COLUMNS)


def _key_name(text: str) -> str:
    return text if text.startswith("apiKeys/") else f"apiKeys/{text}"


def keys_revoke(r: Registry, out: Output, a: argparse.Namespace) -> None:
    key = r.metadata.revoke_api_key(name=_key_name(a.key)).api_key
    if out.as_json:
        out.message(key)
    else:
        out.line(f"revoked {key.name} ({key.principal})")


def _policy_resource(text: str) -> str:
    return "registry" if text == "registry" else model_name(text)


def _role(text: str) -> access_pb2.Role.ValueType:
    try:
        return access_pb2.Role.Value(f"ROLE_{text.strip().upper()}")
    except ValueError:
        raise UsageError(
            f"unknown role {text!r}; roles: viewer, editor, approver, owner, admin"
        ) from None


def _show_policy(out: Output, policy: access_pb2.IamPolicy) -> None:
    if out.as_json:
        out.message(policy)
        return
    out.line(f"{policy.resource}  etag {policy.etag}")
    out.table(policy.bindings, ["role", "members"], strip=["ROLE_"])


def policy_get(r: Registry, out: Output, a: argparse.Namespace) -> None:
    _show_policy(out, r.metadata.get_iam_policy(resource=_policy_resource(a.resource)).policy)


def _edit_policy(r: Registry, out: Output, a: argparse.Namespace, grant: bool) -> None:
    """Read, change one binding, write back with the etag read; a concurrent change in
    between is ABORTED, and then the whole edit is redone once on the fresh policy."""
    resource = _policy_resource(a.resource)
    role = _role(a.role)
    for attempt in (1, 2):
        policy = r.metadata.get_iam_policy(resource=resource).policy
        members: dict[int, list[str]] = {}
        for binding in policy.bindings:
            members.setdefault(binding.role, []).extend(binding.members)
        current = members.setdefault(role, [])
        if (a.member in current) == grant:
            if not out.as_json:
                held = "already holds" if grant else "does not hold"
                out.line(f"unchanged: {a.member} {held} {a.role.lower()} on {resource}")
            _show_policy(out, policy)
            return
        if grant:
            current.append(a.member)
        else:
            current.remove(a.member)
        bindings = [
            access_pb2.Binding(role=access_pb2.Role.ValueType(number), members=names)
            for number, names in sorted(members.items())
            if names
        ]
        try:
            updated = r.metadata.set_iam_policy(
                resource=resource,
                policy=access_pb2.IamPolicy(bindings=bindings, etag=policy.etag),
            ).policy
        except AbortedError:
            if attempt == 2:
                raise
            continue
        _show_policy(out, updated)
        return


def policy_grant(r: Registry, out: Output, a: argparse.Namespace) -> None:
    _edit_policy(r, out, a, grant=True)


def policy_revoke(r: Registry, out: Output, a: argparse.Namespace) -> None:
    _edit_policy(r, out, a, grant=False)


# -- parser ---------------------------------------------------------------------------------

Handler = Callable[[Registry, Output, argparse.Namespace], None]


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        help="host:port of the registry (MODELREG_TARGET; default 127.0.0.1:50051)",
    )
    common.add_argument("--token", default=argparse.SUPPRESS, help="bearer token (MODELREG_TOKEN)")
    common.add_argument(
        "--tls", action="store_true", default=argparse.SUPPRESS, help="connect with TLS"
    )
    common.add_argument(
        "--timeout", type=float, default=argparse.SUPPRESS, help="deadline per call, seconds"
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="JSON output"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelreg", description="The modelreg client.", parents=[_connection_options()]
    )
    add_commands(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    return parser


def add_commands(groups: Any) -> None:
    """Add the client command groups to a `add_subparsers()` action (the server's `modelreg`
    command adds them next to serve, migrate, version and health)."""
    common = _connection_options()

    def group(name: str, help_text: str) -> Any:
        sub = groups.add_parser(name, help=help_text, parents=[common])
        sub.error = _Parser.error.__get__(sub)
        return sub.add_subparsers(dest="action", required=True, parser_class=_Parser)

    def command(sub: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    def listing(p: argparse.ArgumentParser, default: int = 100) -> None:
        p.add_argument("--limit", type=int, default=default, help="at most this many (0: all)")

    models = group("models", "registered models")
    p = command(models, "list", models_list, "list models")
    p.add_argument("--filter", default="")
    p.add_argument("--order-by", default="")
    listing(p)
    p = command(models, "show", models_show, "a model and its aliases")
    p.add_argument("model")
    p = command(models, "create", models_create, "create a model")
    p.add_argument("model")
    p.add_argument("--description", default="")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE")
    p = command(models, "delete", models_delete, "delete a model")
    p.add_argument("model")
    p.add_argument("--force", action="store_true", help="also delete its versions")

    versions = group("versions", "model versions")
    p = command(versions, "register", versions_register, "upload a file or folder as a version")
    p.add_argument("model")
    p.add_argument("path")
    p.add_argument("--run", default="", help="experiments/<e>/runs/<r> that produced it")
    p.add_argument("--signature", default="", help="JSON, or a file holding it")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE")
    p.add_argument("--description", default="")
    p.add_argument("--source", default="")
    p = command(versions, "list", versions_list, "versions of a model")
    p.add_argument("model")
    p.add_argument("--filter", default="")
    p.add_argument("--order-by", default="")
    listing(p)
    p = command(versions, "show", versions_show, "one version (by name, number or alias)")
    p.add_argument("reference", help="models:/m@alias, models:/m/3, models/m/versions/3, or m")
    p.add_argument("version", nargs="?", help="version number when the first argument is a model")
    p = command(versions, "download", versions_download, "download a version's files")
    p.add_argument("reference")
    p.add_argument("dest")

    alias = group("alias", "aliases (champion, challenger, ...)")
    p = command(alias, "set", alias_set, "point an alias at a version (or request it)")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("version")
    p.add_argument("--reason", default="")
    p = command(alias, "delete", alias_delete, "delete an alias")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("--reason", default="")
    p = command(alias, "history", alias_history, "every move of an alias")
    p.add_argument("model")
    p.add_argument("alias")
    listing(p, 0)

    p = command(alias, "rollback", alias_rollback, "back to the previous version (or request it)")
    p.add_argument("model")
    p.add_argument("alias")
    p.add_argument("--reason", default="")

    policies = group("policies", "promotion policies")
    p = command(policies, "set", policies_set, "create or replace a model's policy")
    p.add_argument("model", help="a model, or `registry` for the registry-wide policy")
    p.add_argument("--protect", action="append", metavar="ALIAS", help="repeatable")
    p.add_argument("--approvals", type=int, default=1)
    p.add_argument("--check", action="append", help="e.g. version.ready, signature.present")
    p.add_argument("--threshold", action="append", help='production, e.g. "accuracy >= 0.8"')
    p = command(policies, "show", policies_show, "a model's policy")
    p.add_argument("model")

    metrics = group("metrics", "production metrics")
    p = command(metrics, "record", metrics_record, "record values: name=number ...")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("values", nargs="+", metavar="NAME=VALUE")
    p.add_argument("--environment", required=True)

    lineage = group("lineage", "the lineage graph")
    p = command(lineage, "show", lineage_show, "nodes and edges around a resource")
    p.add_argument("name", help="models/m/versions/n, experiments/e/runs/r, deployments/d, ...")
    p.add_argument("--direction", default="upstream", help="upstream, downstream, both")
    p.add_argument("--hops", type=int, default=5)

    requests = group("requests", "transition requests (approvals)")
    p = command(requests, "create", requests_create, "request a move of an alias or a stage")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--alias", default="")
    p.add_argument("--stage", default="")
    p.add_argument("--comment", default="")
    for name, handler in (("approve", requests_approve), ("reject", requests_reject)):
        p = command(requests, name, handler, f"{name} a request")
        p.add_argument("name", help="models/<m>/transitionRequests/<id>")
        p.add_argument("--comment", default="")
    p = command(requests, "list", requests_list, "requests of a model")
    p.add_argument("model")
    p.add_argument("--state", default="", help="pending, applied, rejected, cancelled, failed")
    listing(p)

    deployments = group("deployments", "deployment records")
    p = command(deployments, "record", deployments_record, "record a deployment")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--environment", required=True)
    p.add_argument("--endpoint", default="")
    p.add_argument("--status", default="active", help="deploying, active, failed, retired")
    p = command(deployments, "list", deployments_list, "deployments of a model")
    p.add_argument("model")
    p.add_argument("--environment", default="")
    p.add_argument("--current", action="store_true", help="only records not superseded")
    listing(p)

    usage = group("usage", "who used which version: downloads and alias resolutions per hour")
    p = command(usage, "list", usage_list, "usage of a model's versions, newest hour first")
    p.add_argument("model")
    p.add_argument("--version", type=int, default=0, help="only this version")
    p.add_argument("--filter", default="", help='e.g. principal = "ci" AND kind = DOWNLOAD')
    listing(p)

    events = group("events", "the event log (JSON lines)")
    p = command(events, "tail", events_tail, "follow live events; reconnects by itself")
    p.add_argument("--filter", default="")
    p.add_argument("--after", type=int, default=None, help="start after this sequence")
    p.add_argument("--count", type=int, default=0, help="stop after this many events")
    p = command(events, "export", events_export, "print past events")
    p.add_argument("--filter", default="")
    p.add_argument("--after", type=int, default=0)
    listing(p, 0)

    webhooks = group("webhooks", "webhook subscriptions")
    p = command(webhooks, "create", webhooks_create, "subscribe a URL; prints its secret once")
    p.add_argument("url")
    p.add_argument("--id", default="")
    p.add_argument("--event-type", action="append", help="repeatable; default: all")
    p.add_argument("--model", action="append", help="models/<m>; repeatable; default: all")
    p.add_argument("--description", default="")
    p = command(webhooks, "list", webhooks_list, "list webhooks")
    listing(p)
    p = command(webhooks, "deliveries", webhooks_deliveries, "deliveries of a webhook")
    p.add_argument("webhook", help="webhooks/<id>")
    p.add_argument("--filter", default="")
    listing(p)

    keys = group("keys", "API keys (bearer tokens for scripts and services)")
    p = command(keys, "create", keys_create, "create a key; prints its secret once")
    p.add_argument("--name", default="", help="a label to recognise the key by")
    p.add_argument("--principal", default="", help="who the key acts as (admins); default: you")
    p.add_argument("--group", action="append", help="a group the key carries; repeatable")
    p.add_argument("--expires-in-days", type=float, default=None, help="default: never")
    p = command(keys, "list", keys_list, "your keys (an admin: every key)")
    p.add_argument("--all", action="store_true", help="also revoked keys")
    p.add_argument("--principal", default="", help="only this principal's keys (admins)")
    listing(p)
    p = command(keys, "revoke", keys_revoke, "revoke a key at once")
    p.add_argument("key", help="apiKeys/<id>")

    # `access`, not `policy`: `policies` are promotion policies (protected aliases, approvals).
    policy = group("access", "who holds which role on a model or on the registry")
    p = command(policy, "get", policy_get, "a model's or the registry's grants")
    p.add_argument("resource", help="a model, or `registry`")
    for name, handler, verb in (
        ("grant", policy_grant, "give"),
        ("revoke", policy_revoke, "take back"),
    ):
        p = command(policy, name, handler, f"{verb} a role")
        p.add_argument("resource", help="a model, or `registry`")
        p.add_argument("role", help="viewer, editor, approver, owner, admin (registry only)")
        p.add_argument("member", help="user:<subject>, group:<group> or user:*")

    audit = group("audit", "reports for reviewers and regulators")
    p = command(audit, "report", audit_report, "everything about a model in one document")
    p.add_argument("model")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.add_argument("--output", "-o", default="")


def run(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    out = Output(getattr(args, "json", False), stdout or sys.stdout)
    target = getattr(args, "target", None) or os.environ.get("MODELREG_TARGET", "127.0.0.1:50051")
    token = getattr(args, "token", None) or os.environ.get("MODELREG_TOKEN") or None
    from modelreg.client._config import CallPolicy

    policy = CallPolicy(timeout=getattr(args, "timeout", 30.0))
    try:
        with Registry(target, token=token, tls=getattr(args, "tls", False), policy=policy) as r:
            args.handler(r, out, args)
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        if err.reason:
            print(f"  reason: {err.reason}", file=sys.stderr)
        for key, value in sorted(err.metadata.items()):
            print(f"  {key}: {value}", file=sys.stderr)
        for violation in err.field_violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        code: int = err.code.value[0]
        return code
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return INVALID_ARGUMENT
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return NOT_FOUND
    except DigestMismatch as err:
        print(f"error: {err}", file=sys.stderr)
        return DATA_LOSS
    except KeyboardInterrupt:
        return grpc.StatusCode.CANCELLED.value[0]
    except BrokenPipeError:
        return 0
    return 0


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args, stdout)


if __name__ == "__main__":
    sys.exit(main())
