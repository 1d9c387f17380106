"""The permission table covers every RPC of every service, names real request fields, and the
check applies it: roles, registry-only rules, listings and internal RPCs."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from modelreg.client._methods import RpcMethod, methods_of
from modelreg_common.access import Access, Role
from modelreg_common.authorizer import check
from modelreg_common.errors import PermissionDenied
from modelreg_common.permissions import RULES, Scope

SERVICES = ("metadata", "artifact", "lifecycle", "events")


def every_rpc() -> dict[str, RpcMethod]:
    return {
        rpc.path: rpc
        for service in SERVICES
        for rpc in methods_of(f"modelreg.{service}.v1").values()
    }


def test_every_rpc_of_every_service_has_a_rule() -> None:
    missing = sorted(set(every_rpc()) - set(RULES))
    assert not missing, f"RPCs without a permission rule: {missing}"


def test_every_rule_is_for_an_rpc_that_exists() -> None:
    stale = sorted(set(RULES) - set(every_rpc()))
    assert not stale, f"rules for RPCs that do not exist: {stale}"


@pytest.mark.parametrize("path", sorted(RULES))
def test_rule_fields_are_string_fields_of_the_request(path: str) -> None:
    rule = RULES[path]
    if not rule.field:
        return
    descriptor: Any = every_rpc()[path].request_type.DESCRIPTOR
    *parents, leaf = rule.field.split(".")
    for part in parents:
        descriptor = descriptor.fields_by_name[part].message_type
    assert descriptor.fields_by_name[leaf].type == descriptor.fields_by_name[leaf].TYPE_STRING


def access(registry: Role = Role.NONE, **models: Role) -> Access:
    return Access(registry_role=registry, model_roles=MappingProxyType(models))


GET_VERSION = RULES["/modelreg.metadata.v1.ModelVersionService/GetModelVersion"]
SET_ALIAS = RULES["/modelreg.lifecycle.v1.AliasService/SetAlias"]
SET_POLICY = RULES["/modelreg.metadata.v1.AccessService/SetIamPolicy"]
LIST_MODELS = RULES["/modelreg.metadata.v1.RegisteredModelService/ListRegisteredModels"]
PUBLISH = RULES["/modelreg.events.v1.EventService/PublishEvents"]


class Named:
    def __init__(self, **fields: str) -> None:
        self.__dict__.update(fields)


def allowed(rule: object, who: Access, request: object) -> bool:
    try:
        check(rule, who, request)  # type: ignore[arg-type]
    except PermissionDenied:
        return False
    return True


def test_a_model_grant_applies_to_that_model_only() -> None:
    viewer = access(fraud=Role.VIEWER)
    assert allowed(GET_VERSION, viewer, Named(name="models/fraud/versions/1"))
    assert not allowed(GET_VERSION, viewer, Named(name="models/churn/versions/1"))


def test_registry_roles_apply_to_every_model() -> None:
    assert allowed(GET_VERSION, access(Role.VIEWER), Named(name="models/any/versions/1"))
    assert not allowed(SET_ALIAS, access(Role.EDITOR), Named(name="models/any/aliases/prod"))
    assert allowed(SET_ALIAS, access(Role.APPROVER), Named(name="models/any/aliases/prod"))


def test_the_registry_policy_needs_an_admin_but_a_model_policy_its_owner() -> None:
    owner = access(Role.OWNER, fraud=Role.OWNER)
    assert allowed(SET_POLICY, owner, Named(resource="models/fraud"))
    assert not allowed(SET_POLICY, owner, Named(resource="registry"))
    assert allowed(SET_POLICY, access(Role.ADMIN), Named(resource="registry"))


def test_listings_need_something_readable() -> None:
    assert allowed(LIST_MODELS, access(fraud=Role.VIEWER), Named())
    assert not allowed(LIST_MODELS, access(), Named())
    assert access(fraud=Role.VIEWER, churn=Role.NONE).readable_models() == frozenset({"fraud"})
    assert access(Role.VIEWER).readable_models() is None


def test_internal_rpcs_are_for_services_and_admins() -> None:
    assert not allowed(PUBLISH, access(Role.OWNER, fraud=Role.OWNER), Named())
    assert allowed(PUBLISH, access(Role.ADMIN), Named())
    assert allowed(PUBLISH, Access(internal=True), Named())


def test_handler_rules_leave_the_check_to_the_handler() -> None:
    upload = RULES["/modelreg.artifact.v1.ArtifactService/Upload"]
    assert upload.scope is Scope.HANDLER
    assert allowed(upload, access(), Named())


def test_docs_roles_md_is_the_table() -> None:
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "scripts" / "roles_table.py"
    spec = importlib.util.spec_from_file_location("roles_table", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    block = module.BLOCK.search(module.DOC.read_text())
    assert block is not None, "docs/roles.md lost its roles-table markers"
    assert block.group(2) == module.table(), "run scripts/roles_table.py --write"
