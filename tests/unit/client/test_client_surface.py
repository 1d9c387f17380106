"""The client's surface is derived from the protos: every RPC reachable, idempotency known."""

from __future__ import annotations

import pytest

from modelreg.client import CallPolicy, Registry
from modelreg.client._config import build_request, resolve_targets
from modelreg.client._methods import GROUPS, methods_of, snake_case


def test_snake_case() -> None:
    assert snake_case("CreateModelVersion") == "create_model_version"
    assert snake_case("GetLineage") == "get_lineage"


def test_every_rpc_of_every_service_is_a_method_of_its_group() -> None:
    from google.protobuf import descriptor_pool

    registry = Registry("127.0.0.1:1")
    try:
        for group, package in GROUPS.items():
            methods = methods_of(package)
            pool = descriptor_pool.Default()
            for rpc in methods.values():
                service_name, method_name = rpc.path.strip("/").split("/")
                service = pool.FindServiceByName(service_name)
                assert service.methods_by_name[method_name].full_name.startswith(package)
                assert callable(getattr(getattr(registry, group), rpc.attribute))
    finally:
        registry.close()


def test_unknown_rpc_is_an_attribute_error() -> None:
    with Registry("127.0.0.1:1") as registry, pytest.raises(AttributeError):
        _ = registry.metadata.no_such_call


def test_reads_and_request_id_writes_are_idempotent_other_writes_are_not() -> None:
    methods = {**methods_of("modelreg.metadata.v1")}
    assert methods["get_model_version"].idempotent
    assert methods["search_model_versions"].idempotent
    assert methods["create_model_version"].has_request_id
    assert methods["create_model_version"].idempotent
    assert not methods["update_model_version"].idempotent


def test_creates_get_a_request_id_without_mutating_the_callers_message() -> None:
    rpc = methods_of("modelreg.metadata.v1")["create_model_version"]
    original = rpc.request_type(parent="models/a")
    sent = build_request(rpc, original, {})
    assert sent.request_id  # type: ignore[attr-defined]
    assert not original.request_id  # type: ignore[attr-defined]
    given = build_request(rpc, None, {"parent": "models/a", "request_id": "fixed"})
    assert given.request_id == "fixed"  # type: ignore[attr-defined]


def test_request_message_of_the_wrong_type_is_refused() -> None:
    methods = methods_of("modelreg.metadata.v1")
    wrong = methods["get_run"].request_type()
    with pytest.raises(TypeError, match="takes GetModelVersionRequest"):
        build_request(methods["get_model_version"], wrong, {})


def test_targets_one_for_all_or_one_per_service() -> None:
    assert set(resolve_targets("h:1", None).values()) == {"h:1"}
    split = resolve_targets("h:1", {"artifact": "a:2"})
    assert split["artifacts"] == "a:2"
    assert split["metadata"] == "h:1"
    with pytest.raises(ValueError, match="unknown services"):
        resolve_targets("h:1", {"artifacts": "a:2"})
    with pytest.raises(ValueError, match="no target"):
        resolve_targets(None, {"artifact": "a:2"})


def test_backoff_grows_and_is_capped() -> None:
    policy = CallPolicy(initial_backoff=0.1, max_backoff=0.4)
    assert all(0 <= policy.backoff(n) <= 0.4 for n in range(1, 10))


def test_unreachable_server_is_unavailable_after_retries_within_the_deadline() -> None:
    from modelreg.client import UnavailableError

    policy = CallPolicy(timeout=2, max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with Registry("127.0.0.1:1", policy=policy) as registry:
        with pytest.raises(UnavailableError):
            registry.metadata.get_model_version(name="models/a/versions/1")
        assert registry.retries == 2
