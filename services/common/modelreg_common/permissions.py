"""The permission table: for every RPC of every service, the role it needs and on what.

One row per RPC, keyed by the full gRPC method path. A row names the request field that holds
the resource (`models/{model}/...` is checked against the caller's role on that model; anything
else, or no field, against the registry-wide role). A test walks every service descriptor and
fails when an RPC has no row; an RPC with no row is refused, never allowed by default.

docs/roles.md is this table for people; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from modelreg_common.access import Role


class Scope(Enum):
    # Checked on the resource named by `Rule.field` (the registry when it names no model).
    RESOURCE = "resource"
    # Lists and searches that span models: the caller must be able to read something, and the
    # store narrows the rows to `readable_models()`.
    LISTING = "listing"
    # Any authenticated caller; the handler checks what depends on stored state (an upload
    # session's owner, whose API key it is).
    HANDLER = "handler"
    # The services' own calls (and admins): outbox publishing, key verification, usage.
    INTERNAL = "internal"


@dataclass(frozen=True)
class Rule:
    permission: str
    role: Role
    scope: Scope = Scope.RESOURCE
    # Dotted path of the request field naming the resource; "" = the registry.
    field: str = ""
    # A stronger role needed when the resource is the registry itself rather than one model
    # (granting registry-wide roles is for admins, granting one model's is for its owners).
    registry_role: Role | None = None


def _resource(
    permission: str, role: Role, field: str = "", *, registry_role: Role | None = None
) -> Rule:
    return Rule(permission, role, Scope.RESOURCE, field, registry_role)


def _listing(permission: str) -> Rule:
    return Rule(permission, Role.VIEWER, Scope.LISTING)


def _handler(permission: str) -> Rule:
    return Rule(permission, Role.NONE, Scope.HANDLER)


def _internal(permission: str) -> Rule:
    return Rule(permission, Role.ADMIN, Scope.INTERNAL)


VIEW, EDIT, APPR, OWN, ADM = Role.VIEWER, Role.EDITOR, Role.APPROVER, Role.OWNER, Role.ADMIN

_META = "/modelreg.metadata.v1."
_ART = "/modelreg.artifact.v1.ArtifactService/"
_LIFE = "/modelreg.lifecycle.v1."
_EV = "/modelreg.events.v1."

RULES: dict[str, Rule] = {
    # -- metadata: access ---------------------------------------------------------------------
    f"{_META}AccessService/CreateApiKey": _handler("api_keys.create"),
    f"{_META}AccessService/GetApiKey": _handler("api_keys.get"),
    f"{_META}AccessService/ListApiKeys": _handler("api_keys.list"),
    f"{_META}AccessService/RevokeApiKey": _handler("api_keys.revoke"),
    f"{_META}AccessService/VerifyApiKey": _internal("api_keys.verify"),
    f"{_META}AccessService/GetIamPolicy": _resource(
        "policies.get", OWN, "resource", registry_role=ADM
    ),
    f"{_META}AccessService/SetIamPolicy": _resource(
        "policies.set", OWN, "resource", registry_role=ADM
    ),
    f"{_META}AccessService/ResolveAccess": _handler("access.resolve"),
    # -- metadata: experiments and runs (registry-wide resources) -------------------------------
    f"{_META}ExperimentService/CreateExperiment": _resource("experiments.create", EDIT),
    f"{_META}ExperimentService/GetExperiment": _resource("experiments.get", VIEW),
    f"{_META}ExperimentService/ListExperiments": _resource("experiments.list", VIEW),
    f"{_META}ExperimentService/UpdateExperiment": _resource("experiments.update", EDIT),
    f"{_META}ExperimentService/DeleteExperiment": _resource("experiments.delete", EDIT),
    f"{_META}ExperimentService/UndeleteExperiment": _resource("experiments.undelete", EDIT),
    f"{_META}RunService/CreateRun": _resource("runs.create", EDIT),
    f"{_META}RunService/GetRun": _resource("runs.get", VIEW),
    f"{_META}RunService/UpdateRun": _resource("runs.update", EDIT),
    f"{_META}RunService/DeleteRun": _resource("runs.delete", EDIT),
    f"{_META}RunService/LogRunData": _resource("runs.log", EDIT),
    f"{_META}RunService/DeleteRunTag": _resource("runs.update", EDIT),
    f"{_META}RunService/ListMetricHistory": _resource("runs.get", VIEW),
    f"{_META}RunService/SearchRuns": _resource("runs.list", VIEW),
    # -- metadata: lineage --------------------------------------------------------------------
    f"{_META}LineageService/GetLineage": _resource("lineage.get", VIEW, "start"),
    f"{_META}LineageService/CreateLineageEdges": _resource("lineage.create", EDIT),
    # -- metadata: registered models and versions ---------------------------------------------
    f"{_META}RegisteredModelService/CreateRegisteredModel": _resource("models.create", EDIT),
    f"{_META}RegisteredModelService/GetRegisteredModel": _resource("models.get", VIEW, "name"),
    f"{_META}RegisteredModelService/ListRegisteredModels": _listing("models.list"),
    f"{_META}RegisteredModelService/SearchRegisteredModels": _listing("models.list"),
    f"{_META}RegisteredModelService/UpdateRegisteredModel": _resource(
        "models.update", EDIT, "registered_model.name"
    ),
    f"{_META}RegisteredModelService/RenameRegisteredModel": _resource("models.rename", OWN, "name"),
    f"{_META}RegisteredModelService/DeleteRegisteredModel": _resource("models.delete", OWN, "name"),
    f"{_META}ModelVersionService/CreateModelVersion": _resource("versions.create", EDIT, "parent"),
    f"{_META}ModelVersionService/GetModelVersion": _resource("versions.get", VIEW, "name"),
    f"{_META}ModelVersionService/ListModelVersions": _resource("versions.list", VIEW, "parent"),
    f"{_META}ModelVersionService/SearchModelVersions": _listing("versions.list"),
    f"{_META}ModelVersionService/UpdateModelVersion": _resource(
        "versions.update", EDIT, "model_version.name"
    ),
    f"{_META}ModelVersionService/FinalizeModelVersion": _resource("versions.update", EDIT, "name"),
    f"{_META}ModelVersionService/FailModelVersion": _resource("versions.update", EDIT, "name"),
    f"{_META}ModelVersionService/DeleteModelVersion": _resource("versions.delete", OWN, "name"),
    f"{_META}ModelVersionService/SetModelVersionTag": _resource("versions.update", EDIT, "name"),
    f"{_META}ModelVersionService/DeleteModelVersionTag": _resource("versions.update", EDIT, "name"),
    # -- artifact -----------------------------------------------------------------------------
    # Upload names its owner in the first streamed message, or continues a session by id: the
    # artifact domain requires editor on the owner when it opens or loads the session.
    f"{_ART}Upload": _handler("files.upload"),
    f"{_ART}CreateUploadSession": _resource("files.upload", EDIT, "owner"),
    # Sessions are named by id; the domain requires editor on the session's owner.
    f"{_ART}GetUploadSession": _handler("files.upload"),
    f"{_ART}CancelUpload": _handler("files.upload"),
    f"{_ART}CreateUploadUrls": _resource("files.upload", EDIT, "owner"),
    f"{_ART}CompleteUpload": _handler("files.upload"),
    f"{_ART}Download": _resource("files.download", VIEW, "owner"),
    f"{_ART}CreateDownloadUrl": _resource("files.download", VIEW, "owner"),
    f"{_ART}GetFile": _resource("files.get", VIEW, "owner"),
    f"{_ART}ListFiles": _resource("files.list", VIEW, "owner"),
    f"{_ART}DeleteFile": _resource("files.delete", EDIT, "owner"),
    f"{_ART}GetManifest": _resource("files.get", VIEW, "owner"),
    f"{_ART}SealManifest": _resource("files.seal", EDIT, "owner"),
    # -- lifecycle ----------------------------------------------------------------------------
    f"{_LIFE}AliasService/SetAlias": _resource("aliases.set", APPR, "name"),
    f"{_LIFE}AliasService/GetAlias": _resource("aliases.get", VIEW, "name"),
    f"{_LIFE}AliasService/DeleteAlias": _resource("aliases.delete", APPR, "name"),
    f"{_LIFE}AliasService/ListAliases": _resource("aliases.list", VIEW, "parent"),
    f"{_LIFE}AliasService/ResolveAlias": _resource("aliases.resolve", VIEW, "name"),
    f"{_LIFE}AliasService/ListAliasHistory": _resource("aliases.get", VIEW, "name"),
    f"{_LIFE}AliasService/RollbackAlias": _resource("aliases.set", APPR, "name"),
    f"{_LIFE}StageService/TransitionStage": _resource("stages.transition", APPR, "name"),
    f"{_LIFE}StageService/GetVersionStage": _resource("stages.get", VIEW, "name"),
    f"{_LIFE}StageService/ListVersionStages": _resource("stages.list", VIEW, "parent"),
    f"{_LIFE}StageService/ListStageHistory": _resource("stages.list", VIEW, "parent"),
    f"{_LIFE}TransitionRequestService/CreateTransitionRequest": _resource(
        "requests.create", EDIT, "parent"
    ),
    f"{_LIFE}TransitionRequestService/GetTransitionRequest": _resource(
        "requests.get", VIEW, "name"
    ),
    f"{_LIFE}TransitionRequestService/ListTransitionRequests": _resource(
        "requests.list", VIEW, "parent"
    ),
    f"{_LIFE}TransitionRequestService/ApproveTransitionRequest": _resource(
        "requests.approve", APPR, "name"
    ),
    f"{_LIFE}TransitionRequestService/RejectTransitionRequest": _resource(
        "requests.approve", APPR, "name"
    ),
    f"{_LIFE}TransitionRequestService/CancelTransitionRequest": _resource(
        "requests.cancel", EDIT, "name"
    ),
    f"{_LIFE}PolicyService/SetPolicy": _resource("policies.set", OWN, "policy.name"),
    f"{_LIFE}PolicyService/GetPolicy": _resource("policies.get", VIEW, "name"),
    f"{_LIFE}PolicyService/DeletePolicy": _resource("policies.set", OWN, "name"),
    f"{_LIFE}DeploymentService/RecordDeployment": _resource("deployments.record", EDIT, "parent"),
    f"{_LIFE}DeploymentService/ListDeployments": _resource("deployments.list", VIEW, "parent"),
    f"{_LIFE}ProductionMetricService/RecordProductionMetrics": _resource(
        "metrics.record", EDIT, "version"
    ),
    f"{_LIFE}ProductionMetricService/ListDegradations": _resource("metrics.list", VIEW, "parent"),
    # -- events -------------------------------------------------------------------------------
    f"{_EV}EventService/PublishEvents": _internal("events.publish"),
    f"{_EV}EventService/ListEvents": _listing("events.list"),
    f"{_EV}EventService/GetEvent": _listing("events.get"),
    f"{_EV}EventService/Subscribe": _listing("events.subscribe"),
    f"{_EV}UsageService/RecordUsage": _internal("usage.record"),
    f"{_EV}UsageService/ListUsage": _resource("usage.list", VIEW, "parent"),
    # A webhook limited to models (`webhook.models`) is managed by their owners and read by
    # their viewers; one without models sees every model's events and belongs to the registry
    # (admins manage it, registry viewers read it). The events domain checks the stored hook.
    f"{_EV}WebhookService/CreateWebhook": _handler("webhooks.create"),
    f"{_EV}WebhookService/GetWebhook": _handler("webhooks.get"),
    f"{_EV}WebhookService/ListWebhooks": _listing("webhooks.list"),
    f"{_EV}WebhookService/UpdateWebhook": _handler("webhooks.update"),
    f"{_EV}WebhookService/DeleteWebhook": _handler("webhooks.delete"),
    f"{_EV}WebhookService/TestWebhook": _handler("webhooks.test"),
    f"{_EV}WebhookService/RotateWebhookSecret": _handler("webhooks.update"),
    f"{_EV}WebhookService/ListDeliveries": _handler("webhooks.get"),
    f"{_EV}WebhookService/RedeliverEvent": _handler("webhooks.redeliver"),
}


def rule_for(method: str) -> Rule | None:
    return RULES.get(method)
