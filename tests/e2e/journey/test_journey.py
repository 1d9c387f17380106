"""The user journey of the README, end to end against `modelreg serve` as a real process.

A data scientist (alice) trains and registers; a policy protects `champion`; alice may not
approve her own promotion, a reviewer (bob) does; a webhook receiver and a Subscribe stream see
the events; the deployment and its degrading metrics are recorded; lineage leads from the
deployment back to the dataset; rollback restores the previous champion; and the audit log
names the actor of every step.

Two users in one server: auth mode `local` with two listed tokens. A call with a token is that
token's principal (with the roles the local admin grants it); one without acts as `local`."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from e2e.journey.serving import serve
from modelreg.client import (
    AsyncRegistry,
    PermissionDeniedError,
    verify_signature,
)
from modelreg.client.cli import main as cli_main
from modelreg.events.v1 import event_pb2
from modelreg.lifecycle.v1 import transition_request_pb2
from modelreg.metadata.v1 import access_pb2, lineage_pb2, model_version_pb2, run_pb2
from modelreg_events.domain.event_types import KNOWN_TYPES

ALICE = "alice-" + uuid.uuid4().hex
BOB = "bob-" + uuid.uuid4().hex


@pytest.fixture
def served(dsn: str, tmp_path: Path) -> Iterator[str]:
    with serve(dsn, tmp_path / "home", {ALICE: "alice", BOB: "bob"}) as target:
        yield target


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it receives."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for _headers, body in self.received:
                    event = json.loads(body)
                    if predicate(event):
                        return dict(event)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the webhook receiver got no such event")
                self.arrived.wait(remaining)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            keeper = box["r"]
            with keeper.arrived:
                keeper.received.append((dict(self.headers.items()), body))
                keeper.arrived.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["r"]
    finally:
        server.shutdown()
        server.server_close()


def _write_model(root: Path, quality: bytes) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "MLmodel").write_bytes(b"flavor: sklearn\n")
    (root / "weights" / "model.bin").write_bytes(quality + os.urandom(64 * 1024))
    return root


SIGNATURE = {
    "inputs": [{"name": "amount", "type": "DATA_TYPE_FLOAT64"}],
    "outputs": [{"name": "fraud_probability", "type": "DATA_TYPE_FLOAT32"}],
}


class Collector:
    """Keeps what a Subscribe stream delivers; `wait` until the events satisfy a condition."""

    def __init__(self) -> None:
        self.events: list[event_pb2.Event] = []
        self._changed = asyncio.Event()

    async def run(self, stream: AsyncIterator[event_pb2.Event]) -> None:
        async for event in stream:
            self.events.append(event)
            self._changed.set()

    async def wait(
        self, condition: Callable[[list[event_pb2.Event]], bool], seconds: float
    ) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not condition(self.events):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            got = [(e.sequence, e.type, e.subject, e.actor) for e in self.events]
            raise AssertionError(f"not within {seconds}s; the stream delivered {got}") from None

    def pairs(self) -> set[tuple[str, str]]:
        return _pairs(self.events)


def _pairs(events: list[event_pb2.Event]) -> set[tuple[str, str]]:
    return {(e.type, e.actor) for e in events}


async def test_the_user_journey(served: str, receiver: Receiver, tmp_path: Path) -> None:
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    parent = f"models/{model}"
    champion = f"{parent}/aliases/champion"
    async with AsyncRegistry(served) as admin:
        # 0. The local admin lets alice create models (she owns what she creates) and bob
        # review any model.
        policy = (await admin.metadata.get_iam_policy(resource="registry")).policy
        policy.bindings.add(role=access_pb2.ROLE_EDITOR, members=["user:alice"])
        policy.bindings.add(role=access_pb2.ROLE_APPROVER, members=["user:bob"])
        await admin.metadata.set_iam_policy(resource="registry", policy=policy)
    async with (
        AsyncRegistry(served, token=ALICE) as alice,
        AsyncRegistry(served, token=BOB) as bob,
    ):
        # 1. A training run logs params, metrics and the dataset it read.
        experiment = (
            await alice.metadata.create_experiment(experiment_id=f"exp-{model}")
        ).experiment
        run = (await alice.metadata.create_run(parent=experiment.name, run={})).run
        dataset = run_pb2.DatasetInput(
            name="transactions-2026-11", digest="sha256:" + "ab" * 32,
            source_uri="s3://data/transactions/2026-11.parquet", context="training",
        )  # fmt: skip
        run = (
            await alice.metadata.log_run_data(
                name=run.name,
                params={"max_depth": "6", "learning_rate": "0.1"},
                metrics=[run_pb2.Metric(key="auc", value=0.93, step=1)],
                inputs=[dataset],
            )
        ).run
        assert run.latest_metrics["auc"] == pytest.approx(0.93)

        # 2. Two versions are registered from files, with a signature; v1 is the first champion.
        v1 = await alice.register_model(
            model, _write_model(tmp_path / "v1", b"v1"), run=run.name, signature=SIGNATURE
        )
        assert v1.state == model_version_pb2.MODEL_VERSION_STATE_READY
        assert (await alice.promote(model, 1, "champion", reason="first model")).moved
        v2 = await alice.register_model(
            model, _write_model(tmp_path / "v2", b"v2"), run=run.name, signature=SIGNATURE,
            tags={"candidate": "yes"},
        )  # fmt: skip
        assert (v2.version, v2.artifact_file_count) == (2, 2)

        # 3. A policy protects champion; production accuracy must stay >= 0.8.
        await alice.lifecycle.set_policy(
            policy={
                "name": f"{parent}/policy",
                "rules": [{"aliases": ["champion"], "protected": True, "required_approvals": 1,
                           "checks": ["version.ready", "signature.present"]}],
                "production_thresholds": ["accuracy >= 0.8"],
            }
        )  # fmt: skip

        # 4. A webhook (alice owns the model, so she may add one limited to it) and a
        # Subscribe stream listen.
        hook = await alice.events.create_webhook(
            webhook={"url": receiver.url, "models": [parent]}, webhook_id=f"hook-{model}"
        )
        # From the start of the log: the model's earlier events too, then live ones.
        stream = Collector()
        listener = asyncio.create_task(
            stream.run(bob.subscribe(f'subject = "{parent}*"', after_sequence=0))
        )

        # 5. Promotion needs approval; the author's own approval is refused.
        request = (
            await alice.promote(model, 2, "champion", reason="v2 beats v1")
        ).transition_request
        assert request is not None
        assert request.state == transition_request_pb2.TRANSITION_REQUEST_STATE_PENDING
        with pytest.raises(PermissionDeniedError) as refused:
            await alice.lifecycle.approve_transition_request(name=request.name, comment="lgtm")
        assert refused.value.reason == "MISSING_ROLE"
        assert (await alice.resolve(f"models:/{model}@champion")).name == v1.name

        # 6. A second user approves: the alias moves.
        approved = (
            await bob.lifecycle.approve_transition_request(name=request.name, comment="checked")
        ).transition_request
        assert approved.state == transition_request_pb2.TRANSITION_REQUEST_STATE_APPLIED
        assert [a.reviewer for a in approved.approvals] == ["bob"]
        assert (await bob.resolve(f"models:/{model}@champion")).name == v2.name

        # 7. The webhook receiver and the stream both get the move.
        await stream.wait(lambda _: ("model_version.alias_set", "bob") in stream.pairs(), 30)
        delivered = await asyncio.to_thread(
            receiver.wait_for,
            lambda e: e["type"] == "model_version.alias_set" and e["subject"] == v2.name,
            30,
        )
        assert delivered["actor"] == "bob"
        headers, body = next(
            (h, b) for h, b in receiver.received if json.loads(b)["id"] == delivered["id"]
        )
        verify_signature(hook.secret, headers, body)

        # 8. A deployment, then production metrics that degrade.
        deployment = (
            await alice.lifecycle.record_deployment(
                parent=parent,
                deployment={"version": v2.name, "environment": "prod-eu",
                            "endpoint": "https://fraud.internal/v1/predict",
                            "status": "DEPLOYMENT_STATUS_ACTIVE"},
            )
        ).deployment  # fmt: skip
        for value in (0.91, 0.72):
            recorded = await alice.lifecycle.record_production_metrics(
                version=v2.name, environment="prod-eu",
                metrics=[{"metric": "accuracy", "value": value}],
            )  # fmt: skip
        assert [d.metric for d in recorded.opened] == ["accuracy"]

        # 9. Lineage: deployment -> version -> run -> dataset.
        graph = await bob.metadata.get_lineage(
            start=deployment.lineage_node,
            direction=lineage_pb2.LINEAGE_DIRECTION_UPSTREAM,
            max_hops=5,
        )
        kinds = {n.name: n.type for n in graph.nodes}
        assert kinds.get(v2.name) == lineage_pb2.LINEAGE_NODE_TYPE_MODEL_VERSION
        assert kinds.get(run.name) == lineage_pb2.LINEAGE_NODE_TYPE_RUN
        datasets = [n for n in graph.nodes if n.type == lineage_pb2.LINEAGE_NODE_TYPE_DATASET]
        assert datasets, graph

        # 10. Rollback: the protected alias needs approval again; then v1 is champion again.
        rollback = await alice.lifecycle.rollback_alias(name=champion, reason="accuracy dropped")
        assert rollback.HasField("transition_request")
        assert rollback.transition_request.version == v1.name
        await bob.lifecycle.approve_transition_request(name=rollback.transition_request.name)
        assert (await alice.resolve(f"models:/{model}@champion")).name == v1.name

        # 11. The audit log shows every step with its actor.
        wanted = {
            ("registered_model.created", "alice"),
            ("model_version.created", "alice"),
            ("model_version.finalized", "alice"),
            ("policy.updated", "alice"),
            ("transition_request.created", "alice"),
            ("transition_request.approved", "bob"),
            ("transition_request.applied", "bob"),
            ("model_version.alias_set", "bob"),
            ("deployment.recorded", "alice"),
            ("production_metrics.recorded", "alice"),
            ("production_metrics.degraded", "alice"),
        }
        rolled_back = rollback.transition_request.name
        await stream.wait(
            lambda events: wanted <= stream.pairs()
            and any(e.type == "transition_request.applied" and e.subject == rolled_back
                    for e in events),
            30,
        )  # fmt: skip
        listener.cancel()
        # The log (ListEvents) holds the same history as the stream, in order, without gaps.
        logged = [
            e
            for flt in (f'subject = "{parent}"', f'subject = "{parent}/*"')
            for e in (await bob.events.list_events(filter=flt, page_size=1000)).events
        ]
        assert wanted <= _pairs(logged)
        # Every type the services emitted is one a webhook or filter may name.
        everything = (await bob.events.list_events(page_size=1000)).events
        assert {e.type for e in everything} <= KNOWN_TYPES
        streamed = [e.sequence for e in stream.events]
        assert streamed == sorted(set(streamed))
        assert set(streamed) <= {e.sequence for e in logged}
        async with asyncio.timeout(30):
            async for event in alice.subscribe(f'subject = "{run.name}"', after_sequence=0):
                assert (event.type, event.actor) == ("run.created", "alice")
                break

        # 12. The audit report (the CLI, as a reviewer runs it) holds the whole story.
        report_path = tmp_path / "audit.json"
        code = await asyncio.to_thread(
            cli_main,
            ["audit", "report", model, "--format", "json", "-o", str(report_path),
             "--target", served, "--token", BOB],
        )  # fmt: skip
        assert code == 0
        report = json.loads(report_path.read_text())
        assert [v["version"]["name"] for v in report["versions"]] == [v1.name, v2.name]
        assert report["versions"][0]["run"]["params"]["max_depth"] == "6"
        approvals = {
            r["request"]["name"]: [a["reviewer"] for a in r["request"].get("approvals", [])]
            for r in report["transition_requests"]
        }
        assert approvals[request.name] == ["bob"]
        assert {"version.ready", "signature.present"} <= {
            c for r in report["transition_requests"] for rule in r["rules"]
            for c in rule["checks"]
        }  # fmt: skip
        history = report["aliases"][0]["history"]
        assert [h.get("to_version") for h in history][:3] == [v1.name, v2.name, v1.name][::-1]
        assert report["deployments"][0]["lineage"]["nodes"]
        assert report["production_metrics"]["degradations"][0]["metric"] == "accuracy"
        # Recorded uses reach the report (flushed every few seconds: present, maybe empty).
        assert isinstance(report["usage"], list)
        assert not any("usage" in gap for gap in report["not_recorded"])
        markdown_code = await asyncio.to_thread(
            cli_main,
            ["audit", "report", model, "-o", str(tmp_path / "audit.md"), "--target", served,
             "--token", BOB],
        )  # fmt: skip
        assert markdown_code == 0
        text = (tmp_path / "audit.md").read_text()
        assert f"# Audit report: {parent}" in text
        assert "| bob |" in text or "bob at" in text
