"""A small kustomize renderer, enough for deploy/kubernetes (kubectl is not available offline).

It implements only the fields our kustomizations use and refuses any other, so a manifest that
relies on a feature it does not know fails here instead of rendering differently from
`kubectl kustomize`: resources (files and directories), namespace, labels (pairs,
includeSelectors=false, includeTemplates), images (newName/newTag) and patches (a strategic
merge patch from a file, or an inline JSON 6902 patch with a kind/name target).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

Resource = dict[str, Any]

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
# Kinds that are not namespaced, among those we ship.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "GatewayClass"}
POD_TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Job": ("spec", "template"),
}


class KustomizeError(ValueError):
    pass


def load_documents(path: Path) -> list[Resource]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def render(directory: Path) -> list[Resource]:
    """The resources `kubectl kustomize directory` would print, in order."""
    spec_path = directory / "kustomization.yaml"
    if not spec_path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    (spec,) = load_documents(spec_path)
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{spec_path}: unsupported fields {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{spec_path}: only kind Kustomization is supported")

    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        resources.extend(render(target) if target.is_dir() else load_documents(target))
    _check_unique(resources, spec_path)

    for patch in spec.get("patches", []):
        _apply_patch(directory, patch, resources)
    for label in spec.get("labels", []):
        _apply_labels(label, resources)
    for image in spec.get("images", []):
        _apply_image(image, resources)
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_KINDS:
                resource.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return resources


def key(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def _check_unique(resources: list[Resource], where: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        if key(resource) in seen:
            raise KustomizeError(f"{where}: {key(resource)} defined twice")
        seen.add(key(resource))


def _find(resources: list[Resource], kind: str, name: str, where: str) -> Resource:
    for resource in resources:
        if key(resource) == (kind, name):
            return resource
    raise KustomizeError(f"{where}: patch target {kind}/{name} not found")


def _apply_patch(directory: Path, patch: dict[str, Any], resources: list[Resource]) -> None:
    if set(patch) - {"path", "patch", "target"}:
        raise KustomizeError(f"{directory}: unsupported patch fields {sorted(patch)}")
    if "path" in patch:
        documents = load_documents(directory / patch["path"])
    else:
        documents = [yaml.safe_load(patch["patch"])]
    target = patch.get("target")
    if target is not None and set(target) - {"kind", "name"}:
        raise KustomizeError(f"{directory}: only kind/name patch targets are supported")
    for document in documents:
        if isinstance(document, list):
            if target is None:
                raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
            resource = _find(resources, target["kind"], target["name"], str(directory))
            for operation in document:
                _json6902(resource, operation)
        else:
            kind = target["kind"] if target else document["kind"]
            name = target["name"] if target else document["metadata"]["name"]
            resource = _find(resources, kind, name, str(directory))
            merged = strategic_merge(resource, document)
            resource.clear()
            resource.update(merged)


def strategic_merge(original: Any, patch: Any) -> Any:
    """Maps merge key by key; lists of named maps (containers, env, ports, volumes) merge by
    `name`; any other list is replaced, as kustomize does for lists without a merge key."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for field, value in patch.items():
            if field.startswith("$"):
                raise KustomizeError(f"strategic merge directive {field} is not supported")
            if value is None:
                merged.pop(field, None)
            else:
                merged[field] = strategic_merge(original.get(field), value)
        return merged
    if (
        isinstance(original, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in original + patch)
    ):
        merged_list = copy.deepcopy(original)
        for item in patch:
            for index, existing in enumerate(merged_list):
                if existing["name"] == item["name"]:
                    merged_list[index] = strategic_merge(existing, item)
                    break
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"bad JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json6902(resource: Resource, operation: dict[str, Any]) -> None:
    op = operation["op"]
    *parents, last = _pointer(operation["path"])
    node: Any = resource
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if op == "add":
        if isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), value)
        else:
            node[last] = value
    elif op == "replace":
        if isinstance(node, list):
            node[int(last)] = value
        elif last not in node:
            raise KustomizeError(f"replace of missing {operation['path']}")
        else:
            node[last] = value
    elif op == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise KustomizeError(f"unsupported JSON patch op {op!r}")


def _apply_labels(label: dict[str, Any], resources: list[Resource]) -> None:
    if label.get("includeSelectors", False):
        raise KustomizeError(
            "labels.includeSelectors=true is not supported (selectors are immutable)"
        )
    pairs: dict[str, str] = label["pairs"]
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        path = POD_TEMPLATE_PATHS.get(resource["kind"])
        if label.get("includeTemplates", False) and path is not None:
            template = resource[path[0]][path[1]]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    path = POD_TEMPLATE_PATHS.get(resource["kind"])
    if path is None:
        return None
    spec: dict[str, Any] = resource[path[0]][path[1]]["spec"]
    return spec


def split_image(image: str) -> tuple[str, str]:
    """(name, ":tag" or "@digest" or "")."""
    if "@" in image:
        name, _, digest = image.partition("@")
        return name, f"@{digest}"
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def _apply_image(image: dict[str, Any], resources: list[Resource]) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"unsupported image fields {sorted(image)}")
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, suffix = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                suffix = f"@{image['digest']}"
            elif "newTag" in image:
                suffix = f":{image['newTag']}"
            container["image"] = name + suffix
