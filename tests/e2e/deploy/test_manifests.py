"""deploy/kubernetes validated offline: each overlay rendered (our kustomize subset), every
Kubernetes object checked by `kubernetes-validate --strict`, Gateway API objects by a JSON schema
written from the v1 CRDs, and the wiring checked against the code: routes and probes name real
gRPC services, env vars are real settings, references resolve, and NetworkPolicies allow exactly
the calls the services make."""

from __future__ import annotations

import copy
import importlib
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml  # type: ignore[import-untyped]
from pydantic_settings import BaseSettings

from e2e.deploy.kustomize import Resource, key, pod_spec, render, strategic_merge
from modelreg_common.settings import PeerSettings, Settings
from testkit import grpc_services

ROOT = Path(__file__).resolve().parents[3]
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
# The four deployables; each is also a peer name (MODELREG_PEERS__<NAME>).
SERVICES = ["metadata", "artifact", "lifecycle", "events"]
assert set(SERVICES) <= PeerSettings.model_fields.keys()
GATEWAY_API = "gateway.networking.k8s.io/v1"
ISTIO_SECURITY = "security.istio.io/v1"
# Created out of band in production (deploy/README.md); optional refs need not exist at all.
EXTERNAL_SECRETS = {"modelreg-postgres", "modelreg-s3", "modelreg-auth", "modelreg-gateway-tls"}
GRPC_PORT = 50051


@cache
def rendered(overlay: str) -> list[Resource]:
    return render(KUBE / overlay)


def resources(overlay: str) -> list[Resource]:
    return copy.deepcopy(rendered(overlay))


def by_kind(objects: list[Resource], kind: str) -> list[Resource]:
    return [o for o in objects if o["kind"] == kind]


def find(objects: list[Resource], kind: str, name: str) -> Resource | None:
    return next((o for o in objects if key(o) == (kind, name)), None)


def containers(objects: list[Resource]) -> list[tuple[Resource, dict[str, Any]]]:
    out = []
    for o in objects:
        spec = pod_spec(o)
        if spec is not None:
            out += [(o, c) for c in spec.get("containers", []) + spec.get("initContainers", [])]
    return out


def service_of(deployment: Resource) -> str:
    component: str = deployment["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/component"
    ]
    return component


def registry_deployments(objects: list[Resource]) -> list[Resource]:
    return [
        d
        for d in by_kind(objects, "Deployment")
        if d["metadata"]["labels"].get("app.kubernetes.io/name") == "modelreg"
    ]


# -- schema validation ----------------------------------------------------------------------------


# Custom resources the Kubernetes validator has no schema for: apiVersion -> our schema file.
CRD_SCHEMAS = {GATEWAY_API: "gateway_api_v1.schema.json", ISTIO_SECURITY: "istio_v1.schema.json"}


@cache
def crd_validators() -> dict[tuple[str, str], Any]:
    validators = {}
    for api_version, filename in CRD_SCHEMAS.items():
        loaded = json.loads((Path(__file__).parent / filename).read_text())
        for kind, schema in loaded.items():
            if not kind.startswith("$"):
                validators[(api_version, kind)] = jsonschema.Draft202012Validator(
                    {**schema, "$defs": loaded.get("$defs", {})}
                )
    return validators


def crd_errors(resource: Resource) -> list[str]:
    validator = crd_validators().get((resource["apiVersion"], resource["kind"]))
    assert validator is not None, f"no schema for {resource['apiVersion']} {resource['kind']}"
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(resource)
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_pass_strict_kubernetes_validation(overlay: str, tmp_path: Path) -> None:
    objects = resources(overlay)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceAccount",
        "Job",
        "ConfigMap",
        "GRPCRoute",
        "Gateway",
    } <= kinds
    files = []
    for index, resource in enumerate(objects):
        if resource["apiVersion"] in CRD_SCHEMAS:
            assert crd_errors(resource) == [], key(resource)
            continue
        path = tmp_path / f"{index:03d}-{resource['kind']}-{resource['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(resource))
        files.append(str(path))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_validators_reject_broken_objects(tmp_path: Path) -> None:
    """Guards against a validator that accepts anything (a schema typo, a missing --strict)."""
    objects = resources("base")
    route = copy.deepcopy(find(objects, "GRPCRoute", "modelreg"))
    assert route is not None
    route["spec"]["rules"][0]["matches"][0]["method"]["service"] = "modelreg/metadata"
    route["spec"]["rules"][0]["backendRefs"][0].pop("port")
    route["spec"]["rules"][0]["timeouts"] = {"request": "1s"}
    errors = crd_errors(route)
    assert any("matches/0/method/service" in e for e in errors), errors
    assert any("'port' is a required property" in e for e in errors), errors
    assert any("timeouts" in e for e in errors), errors
    gateway = copy.deepcopy(find(objects, "Gateway", "modelreg"))
    assert gateway is not None
    del gateway["spec"]["listeners"][0]["tls"]
    assert any("'tls' is a required property" in e for e in crd_errors(gateway))

    (mtls,) = by_kind(resources("overlays/prod"), "PeerAuthentication")
    assert mtls["spec"]["mtls"]["mode"] == "STRICT"
    mtls = copy.deepcopy(mtls)
    mtls["spec"]["mtls"]["mode"] = "STRICTER"
    assert any("mtls/mode" in e for e in crd_errors(mtls))

    deployment = copy.deepcopy(registry_deployments(objects)[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["sevice"] = ""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(deployment))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "sevice" in result.stdout + result.stderr


# -- the wiring against the code ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_route_sends_every_service_name_to_its_owner(overlay: str) -> None:
    objects = resources(overlay)
    (route,) = by_kind(objects, "GRPCRoute")
    routed: dict[str, str] = {}
    for rule in route["spec"]["rules"]:
        (backend,) = rule["backendRefs"]
        service = find(objects, "Service", backend["name"])
        assert service is not None, f"route points at missing Service {backend['name']}"
        assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
        owner = service["spec"]["selector"]["app.kubernetes.io/component"]
        for match in rule["matches"]:
            name = match["method"]["service"]
            assert name not in routed, f"{name} routed twice"
            routed[name] = owner
    expected = {name: package for package in SERVICES for name in grpc_services(package)}
    assert routed == expected
    (gateway,) = by_kind(objects, "Gateway")
    listeners = {listener["name"] for listener in gateway["spec"]["listeners"]}
    for parent in route["spec"]["parentRefs"]:
        assert parent["name"] == gateway["metadata"]["name"]
        assert parent["sectionName"] in listeners
    assert set(route["spec"]["hostnames"]) == {
        listener["hostname"] for listener in gateway["spec"]["listeners"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_runs_its_own_entrypoint_with_probes_on_its_grpc_names(overlay: str) -> None:
    objects = resources(overlay)
    deployments = registry_deployments(objects)
    assert sorted(service_of(d) for d in deployments) == sorted(SERVICES)
    for deployment in deployments:
        name = service_of(deployment)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["serve", "--service", name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == GRPC_PORT
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            grpc_probe = container[probe]["grpc"]
            assert grpc_probe["port"] == GRPC_PORT
            assert grpc_probe["service"] in {"", *grpc_services(name)}, (name, probe)
        assert container["readinessProbe"]["grpc"]["service"] in grpc_services(name)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        config = find(objects, "ConfigMap", "modelreg-config")
        assert config is not None
        assert config["data"]["MODELREG_LISTEN"].endswith(f":{GRPC_PORT}")
        assert config["data"]["MODELREG_METRICS_LISTEN"].endswith(f":{ports['metrics']}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    objects = resources(overlay)
    for service in by_kind(objects, "Service"):
        targets = [
            d
            for d in by_kind(objects, "Deployment")
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, f"Service {service['metadata']['name']} selects {len(targets)}"
        port_names = {
            p["name"] for p in targets[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
        if service["metadata"]["labels"].get("app.kubernetes.io/name") == "modelreg":
            grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
            assert grpc["appProtocol"] == "grpc"
    for kind in ("HorizontalPodAutoscaler",):
        for hpa in by_kind(objects, kind):
            target = hpa["spec"]["scaleTargetRef"]
            assert find(objects, target["kind"], target["name"]) is not None
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"].items()
        assert any(
            selector <= d["spec"]["template"]["metadata"]["labels"].items()
            for d in by_kind(objects, "Deployment")
        )
    rendered_secrets = {o["metadata"]["name"] for o in by_kind(objects, "Secret")}
    for workload, container in containers(objects):
        spec = pod_spec(workload)
        assert spec is not None
        account = spec.get("serviceAccountName")
        assert account
        assert find(objects, "ServiceAccount", account) is not None
        for source in container.get("envFrom", []):
            assert find(objects, "ConfigMap", source["configMapRef"]["name"]) is not None
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional", False):
                assert ref["name"] in rendered_secrets | EXTERNAL_SECRETS
                if ref["name"] in rendered_secrets:
                    secret = find(objects, "Secret", ref["name"])
                    assert secret is not None
                    assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})
            if is_peer_target(variable["name"]):
                host, _, port = variable["value"].rpartition(":")
                target = find(objects, "Service", host)
                assert target is not None, variable
                assert int(port) in {p["port"] for p in target["spec"]["ports"]}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert find(objects, "ConfigMap", volume["configMap"]["name"]) is not None
    for gateway in by_kind(objects, "Gateway"):
        for listener in gateway["spec"]["listeners"]:
            for ref in listener.get("tls", {}).get("certificateRefs", []):
                assert ref["name"] in rendered_secrets | EXTERNAL_SECRETS


def is_peer_target(variable: str) -> bool:
    """MODELREG_PEERS__<SERVICE> names where a peer is; the other PEERS__ settings (token,
    timeout) are not targets."""
    return variable.removeprefix("MODELREG_PEERS__").lower() in SERVICES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_peers_are_exactly_the_services_each_one_calls(overlay: str) -> None:
    objects = resources(overlay)
    peers = {}
    for deployment in registry_deployments(objects):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        peers[service_of(deployment)] = {
            v["name"].removeprefix("MODELREG_PEERS__").lower()
            for v in container["env"]
            if is_peer_target(v["name"])
        }
    assert peers == CALLS


def _settings_classes() -> tuple[dict[str, type[BaseSettings]], list[str]]:
    """env prefix -> settings class, for the runtime and every service that has settings; plus
    the prefixes of services whose settings module is absent from this build."""
    classes: dict[str, type[BaseSettings]] = {"MODELREG_": Settings}
    absent = []
    for service in SERVICES:
        try:
            module = importlib.import_module(f"modelreg_{service}.settings")
        except ModuleNotFoundError:
            absent.append(f"MODELREG_{service.upper()}_")
            continue
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value.__module__ == module.__name__
            ):
                classes[str(value.model_config.get("env_prefix", ""))] = value
    return classes, absent


def _field_exists(model: type[pydantic.BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    annotation = field.annotation
    return (
        isinstance(annotation, type)
        and issubclass(annotation, pydantic.BaseModel)
        and _field_exists(annotation, parts[1:])
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_is_a_real_setting(overlay: str) -> None:
    objects = resources(overlay)
    names: set[str] = set()
    for workload, container in containers(objects):
        if workload["metadata"]["labels"].get("app.kubernetes.io/name") != "modelreg":
            continue
        names |= {v["name"] for v in container.get("env", [])}
        for source in container.get("envFrom", []):
            config = find(objects, "ConfigMap", source["configMapRef"]["name"])
            assert config is not None
            names |= set(config["data"])
    classes, absent = _settings_classes()
    unknown, unverifiable = [], []
    for name in sorted(names):
        assert name.startswith("MODELREG_"), name
        prefix = max((p for p in classes if name.startswith(p)), key=len)
        if prefix == "MODELREG_" and any(name.startswith(p) for p in absent):
            unverifiable.append(name)
            continue
        settings = classes[prefix]
        path = (
            name.removeprefix(prefix)
            .lower()
            .split(settings.model_config.get("env_nested_delimiter") or "__")
        )
        if not _field_exists(settings, path):
            unknown.append(name)
    assert unknown == []
    if unverifiable:
        pytest.skip(f"settings module absent from this build for: {', '.join(unverifiable)}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_unprivileged_with_bounded_resources(overlay: str) -> None:
    for workload, container in containers(resources(overlay)):
        spec = pod_spec(workload)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= container["resources"][bound].keys(), container["name"]


def test_overlays_change_what_they_say() -> None:
    dev, prod = resources("overlays/dev"), resources("overlays/prod")
    for objects, namespace, replicas in ((dev, "modelreg-dev", 1), (prod, "modelreg", 3)):
        assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
            namespace
        }
        for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
            assert hpa["spec"]["minReplicas"] == replicas
        for _, container in containers(objects):
            if container["name"] != "collector":
                assert container["image"].startswith("ghcr.io/example/modelreg:")
    assert by_kind(prod, "Secret") == []


# -- network policy: who may call whom ------------------------------------------------------

# The calls the services make (peers, from the code): lifecycle checks versions in metadata;
# metadata seals manifests in artifact and asks lifecycle; every outbox relay publishes to events;
# every service asks metadata for its callers' roles and API keys, and follows grant changes and
# sends usage counts to events (the events service is its own peer for those).
CALLS: dict[str, set[str]] = {
    "metadata": {"artifact", "lifecycle", "events"},
    "artifact": {"metadata", "events"},
    "lifecycle": {"metadata", "events"},
    "events": {"metadata"},
}


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        values = expression.get("values", [])
        if (
            (operator == "In" and value not in values)
            or (operator == "NotIn" and value in values)
            or (operator == "Exists" and value is None)
            or (operator == "DoesNotExist" and value is not None)
        ):
            return False
    return True


Pod = tuple[dict[str, str], dict[str, str]]  # (namespace labels, pod labels)


def _peer_matches(peer: dict[str, Any], policy_ns: dict[str, str], pod: Pod) -> bool:
    namespace, labels = pod
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        return _selects(peer["namespaceSelector"], namespace) and _selects(
            peer.get("podSelector"), labels
        )
    return namespace == policy_ns and _selects(peer.get("podSelector"), labels)


def _port_matches(rule: dict[str, Any], port: tuple[str, int]) -> bool:
    ports = rule.get("ports")
    return ports is None or any(p.get("port") in port for p in ports)


def _allowed(
    policies: list[Resource], direction: str, subject: Pod, other: Pod | None, port: tuple[str, int]
) -> bool:
    """Whether `subject`'s policies let traffic in from / out to `other` (None: outside the
    cluster) on `port`; a pod no policy selects for that direction is unrestricted."""
    namespace = subject[0]
    selecting = [
        p
        for p in policies
        if _selects(p["spec"]["podSelector"], subject[1])
        and direction in p["spec"].get("policyTypes", [])
    ]
    if not selecting:
        return True
    field, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(field, []) or []:
            if not _port_matches(rule, port):
                continue
            peers = rule.get(peers_key)
            if peers is None:
                return True
            if other is None:
                if any("ipBlock" in peer for peer in peers):
                    return True
                continue
            if any(_peer_matches(peer, namespace, other) for peer in peers):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_exactly_the_calls_the_services_make(overlay: str) -> None:
    objects = resources(overlay)
    policies = by_kind(objects, "NetworkPolicy")
    namespace = {"kubernetes.io/metadata.name": "modelreg"}
    pods: dict[str, Pod] = {
        "client": ({"kubernetes.io/metadata.name": "apps"}, {"modelreg.io/client": "true"}),
        "gateway": (namespace, {"gateway.networking.k8s.io/gateway-name": "modelreg"}),
        "shared-gateway": (
            {"kubernetes.io/metadata.name": "gw", "modelreg.io/gateway": "true"},
            {"app": "gateway"},
        ),
        "neighbour": (namespace, {"app": "other"}),
        "stranger": ({"kubernetes.io/metadata.name": "apps"}, {"app": "other"}),
    }
    for deployment in registry_deployments(objects):
        pods[service_of(deployment)] = (
            namespace,
            deployment["spec"]["template"]["metadata"]["labels"],
        )
    grpc = ("grpc", GRPC_PORT)
    allowed = {
        (source, target)
        for source in pods
        for target in SERVICES
        if _allowed(policies, "Ingress", pods[target], pods[source], grpc)
        and (
            pods[source][0] != namespace
            or _allowed(policies, "Egress", pods[source], pods[target], grpc)
        )
    }
    clients = ("client", "gateway", "shared-gateway")
    expected = {(c, s) for c in clients for s in SERVICES} | {
        (source, target) for source, targets in CALLS.items() for target in targets
    }
    assert allowed == expected
    # Out of the cluster: every service reaches PostgreSQL; only artifact reaches S3 and only
    # events reaches webhook receivers.
    for service in SERVICES:
        assert _allowed(policies, "Egress", pods[service], None, ("", 5432)) or _allowed(
            policies, "Egress", pods[service], ({}, {}), ("", 5432)
        )
        https = _allowed(policies, "Egress", pods[service], ({}, {}), ("", 443))
        assert https == (service in {"artifact", "events"}), service
        metrics_from_monitoring = _allowed(
            policies,
            "Ingress",
            pods[service],
            ({"modelreg.io/monitoring": "true"}, {"app": "prometheus"}),
            ("metrics", 9090),
        )
        assert metrics_from_monitoring


def test_renderer_merges_like_kustomize() -> None:
    original = {
        "spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}]}
    }
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}]}}
    merged = strategic_merge(original, patch)
    assert merged["spec"]["containers"] == [
        {
            "name": "a",
            "image": "x",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        }
    ]
    assert strategic_merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert strategic_merge({"a": 1, "b": 2}, {"a": None}) == {"b": 2}


def test_dockerfile_runs_modelreg_as_a_non_root_user() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert user
    assert user[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r'^ENTRYPOINT \["modelreg"\]', text, flags=re.MULTILINE)
    deployment = registry_deployments(resources("base"))[0]
    assert (
        int(user[-1].split(":")[0])
        == deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
