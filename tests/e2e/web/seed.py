"""The registry the browser tests look at, made through the Python client as users would."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelreg.client import AsyncRegistry
from modelreg.metadata.v1 import run_pb2

MODEL = "fraud-detector"

SIGNATURE = {
    "inputs": [
        {"name": "amount", "type": "DATA_TYPE_FLOAT64"},
        {"name": "merchant", "type": "DATA_TYPE_STRING", "optional": True},
        {"name": "history", "type": "DATA_TYPE_FLOAT32", "shape": [-1, 16]},
    ],
    "outputs": [{"name": "fraud_probability", "type": "DATA_TYPE_FLOAT32"}],
    "params": [{"name": "threshold", "type": "DATA_TYPE_FLOAT64", "default_value": "0.5"}],
}


@dataclass(frozen=True)
class Seeded:
    model: str
    request: str  # alice's pending request: v2 -> champion
    blocked: str  # alice's pending request v2 -> Production, whose policy check fails


def _write_model(root: Path, marker: bytes) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "MLmodel").write_bytes(b"flavor: sklearn\n")
    (root / "weights" / "model.bin").write_bytes(marker + os.urandom(32 * 1024))
    return root


async def seed(alice: AsyncRegistry, files: Path) -> Seeded:
    parent = f"models/{MODEL}"
    experiment = (await alice.metadata.create_experiment(experiment_id="fraud-training")).experiment
    run = (
        await alice.metadata.create_run(
            parent=experiment.name,
            run={
                "display_name": "xgboost nightly",
                "code": {
                    "repository_url": "https://git.example.com/risk/fraud",
                    "commit": "4f2a9c1e" * 5,
                },
            },
        )
    ).run
    run = (
        await alice.metadata.log_run_data(
            name=run.name,
            params={"max_depth": "6", "learning_rate": "0.1", "n_estimators": "400"},
            metrics=[run_pb2.Metric(key="auc", value=0.94, step=1)],
            inputs=[
                run_pb2.DatasetInput(
                    name="transactions-2026-11",
                    digest="sha256:" + "ab" * 32,
                    source_uri="s3://data/transactions/2026-11.parquet",
                    context="training",
                )
            ],
        )
    ).run
    await alice.metadata.create_registered_model(
        registered_model_id=MODEL,
        registered_model={
            "description": "Scores card transactions for fraud in real time.",
            "tags": {"team": "risk", "task": "classification"},
        },
    )
    await alice.register_model(
        MODEL, _write_model(files / "v1", b"v1"), run=run.name, signature=SIGNATURE,
        framework="xgboost", model_format="ubj",
    )  # fmt: skip
    await alice.promote(MODEL, 1, "champion", reason="first model")
    await alice.register_model(
        MODEL, _write_model(files / "v2", b"v2"), run=run.name, signature=SIGNATURE,
        framework="xgboost", model_format="ubj", tags={"candidate": "yes"},
        description="Retrained on November data.",
    )  # fmt: skip
    await alice.lifecycle.set_policy(
        policy={
            "name": f"{parent}/policy",
            "rules": [
                {
                    "aliases": ["champion"],
                    "protected": True,
                    "required_approvals": 1,
                    "checks": ["version.ready", "signature.present", "metrics.auc >= 0.9"],
                }
            ],
            "production_thresholds": ["accuracy >= 0.8"],
        }
    )
    await alice.lifecycle.record_deployment(
        parent=parent,
        deployment={
            "version": f"{parent}/versions/1",
            "environment": "prod-eu",
            "endpoint": "https://fraud.internal/v1/predict",
            "status": "DEPLOYMENT_STATUS_ACTIVE",
        },
    )
    for value in (0.91, 0.88, 0.79):
        await alice.lifecycle.record_production_metrics(
            version=f"{parent}/versions/1",
            environment="prod-eu",
            metrics=[{"metric": "accuracy", "value": value}],
        )
    await alice.events.create_webhook(
        webhook={"url": "https://hooks.example.com/modelreg", "models": [parent],
                 "event_types": ["model_version.alias_set"], "description": "CD pipeline"},
        webhook_id="cd-pipeline",
    )  # fmt: skip
    request = (
        await alice.lifecycle.create_transition_request(
            parent=parent,
            transition_request={
                "version": f"{parent}/versions/2",
                "alias": "champion",
                "comment": "v2 beats v1 on November data",
            },
        )
    ).transition_request
    # A request made before the policy covered Production: its check now fails, so an
    # approval is refused by the server, which the approvals page must show readably.
    blocked = (
        await alice.lifecycle.create_transition_request(
            parent=parent,
            transition_request={
                "version": f"{parent}/versions/2",
                "stage": "Production",
                "comment": "ship it",
            },
        )
    ).transition_request
    policy = (await alice.lifecycle.get_policy(name=f"{parent}/policy")).policy
    policy.rules.add(stages=["Production"], required_approvals=1, checks=["tags.validated"])
    await alice.lifecycle.set_policy(policy=policy)
    for name, description, tags in (
        ("churn", "Predicts which subscribers cancel next month.", {"team": "growth"}),
        ("credit-risk", "Probability of default for new loans.", {"team": "risk"}),
    ):
        await alice.metadata.create_registered_model(
            registered_model_id=name,
            registered_model={"description": description, "tags": tags},
        )
    return Seeded(model=MODEL, request=request.name, blocked=blocked.name)
