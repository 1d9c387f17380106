"""The event types the registry emits (`entity.action`), as named in each service's issue.

Webhook subscriptions and filters must name one of these, so a typo is INVALID_ARGUMENT
instead of a subscription that silently never fires. The log itself accepts any well-formed
type: a producer newer than this list must not block its relay.
"""

from __future__ import annotations

import re

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

KNOWN_TYPES: frozenset[str] = frozenset(
    {
        # metadata
        "experiment.created",
        "experiment.updated",
        "experiment.deleted",
        "experiment.restored",
        "run.created",
        "run.updated",
        "run.deleted",
        "registered_model.created",
        "registered_model.updated",
        "registered_model.renamed",
        "registered_model.deleted",
        "model_version.created",
        "model_version.finalized",
        "model_version.updated",
        "model_version.deleted",
        "model_version.failed",
        "model_version_tag.set",
        "model_version_tag.deleted",
        "registered_model_tag.set",
        "registered_model_tag.deleted",
        "lineage_node.recorded",
        "lineage_edge.created",
        "api_key.created",
        "api_key.revoked",
        "iam_policy.updated",
        # artifact
        "artifact.uploaded",
        "artifact.deleted",
        "artifact.gc_collected",
        # lifecycle
        "model_version.alias_set",
        "model_version.alias_deleted",
        "model_version.stage_changed",
        "transition_request.created",
        "transition_request.approved",
        "transition_request.rejected",
        "transition_request.cancelled",
        "transition_request.applied",
        "transition_request.failed",
        "policy.updated",
        "policy.deleted",
        "deployment.recorded",
        "production_metrics.recorded",
        "production_metrics.degraded",
        "production_metrics.recovered",
        # events
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
        "webhook.secret_rotated",
        "webhook.test",
    }
)


def is_well_formed(event_type: str) -> bool:
    return TYPE_PATTERN.match(event_type) is not None


def is_known(event_type: str) -> bool:
    return event_type in KNOWN_TYPES
