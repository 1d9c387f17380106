"""Discovery of the registry's RPCs from the generated service descriptors.

The client's grouped methods (`registry.metadata.create_model_version`) are derived from the
protos at import time, so a new RPC is reachable from Python as soon as its code is generated.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

# Client attribute name -> proto package of the service group.
GROUPS: dict[str, str] = {
    "metadata": "modelreg.metadata.v1",
    "artifacts": "modelreg.artifact.v1",
    "lifecycle": "modelreg.lifecycle.v1",
    "events": "modelreg.events.v1",
}
# Which service (as in `modelreg serve --service`) serves each group.
SERVICE_OF_GROUP: dict[str, str] = {
    "metadata": "metadata",
    "artifacts": "artifact",
    "lifecycle": "lifecycle",
    "events": "events",
}

# Reads are safe to retry; so are writes that carry a request_id (the server deduplicates).
_READ_PREFIXES = ("Get", "List", "Search", "Resolve", "Batch Get")


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class RpcMethod:
    attribute: str  # create_model_version
    path: str  # /modelreg.metadata.v1.ModelVersionService/CreateModelVersion
    request_type: type[Message]
    response_type: type[Message]
    client_streaming: bool
    server_streaming: bool
    has_request_id: bool

    @property
    def idempotent(self) -> bool:
        name = self.path.rsplit("/", 1)[1]
        return self.has_request_id or name.startswith(_READ_PREFIXES)


def _method(service_full_name: str, method: MethodDescriptor) -> RpcMethod:
    request_type: Any = message_factory.GetMessageClass(method.input_type)
    response_type: Any = message_factory.GetMessageClass(method.output_type)
    return RpcMethod(
        attribute=snake_case(method.name),
        path=f"/{service_full_name}/{method.name}",
        request_type=request_type,
        response_type=response_type,
        client_streaming=method.client_streaming,
        server_streaming=method.server_streaming,
        has_request_id="request_id" in method.input_type.fields_by_name,
    )


@cache
def methods_of(package: str) -> dict[str, RpcMethod]:
    """Every RPC of every service in `package`, by snake_case name. Empty if the package has
    no generated code in this installation."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return {}
    found: dict[str, RpcMethod] = {}
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.endswith("_pb2"):
            continue
        pb2 = importlib.import_module(f"{package}.{info.name}")
        for service in pb2.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rpc = _method(service.full_name, method)
                if rpc.attribute in found:
                    raise RuntimeError(f"two RPCs named {rpc.attribute} in {package}")
                found[rpc.attribute] = rpc
    return found
