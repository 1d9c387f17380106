"""The services this build has, by name. A service is listed only once it exists; each entry
points at its `ServiceSpec`, imported only when selected."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from modelreg_common.server import ServiceSpec

SERVICES: dict[str, str] = {
    "metadata": "modelreg_metadata.app:SPEC",
    "lifecycle": "modelreg_lifecycle.app:SPEC",
    "artifact": "modelreg_artifact.app:SPEC",
    "events": "modelreg_events.app:SPEC",
}


def load_specs(names: Sequence[str] | None = None) -> list[ServiceSpec]:
    selected = list(names) if names else list(SERVICES)
    unknown = [n for n in selected if n not in SERVICES]
    if unknown:
        raise SystemExit(
            f"unknown service(s) {', '.join(unknown)}; this build has: "
            f"{', '.join(SERVICES) or 'none yet'}"
        )
    specs = []
    for name in selected:
        module_name, _, attribute = SERVICES[name].partition(":")
        specs.append(getattr(importlib.import_module(module_name), attribute))
    return specs
