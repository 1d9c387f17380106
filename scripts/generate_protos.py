"""Generate Python messages, gRPC stubs and typed stubs from protos/ into the client package.

Old output is removed first so a deleted proto leaves no stale module behind.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "clients" / "python" / "src"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def main() -> int:
    # `generate_protos.py metadata artifact` regenerates only those packages; default: all.
    packages = sys.argv[1:] or sorted(p.name for p in (PROTOS / "modelreg").iterdir() if p.is_dir())
    sources: list[str] = []
    for package in packages:
        for old in (OUT / "modelreg" / package).rglob("*_pb2*"):
            if old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
        found = (PROTOS / "modelreg" / package).rglob("*.proto")
        sources += sorted(str(p.relative_to(PROTOS)) for p in found)
    well_known = Path(protoc.__file__).parent / "_proto"
    # The mypy plugins live beside this interpreter, which need not be on PATH.
    bin_dir = Path(sys.executable).parent
    args = [
        "grpc_tools.protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        *sources,
    ]
    code = protoc.main(args)
    if code != 0:
        return int(code)
    # Packages for each generated folder, so `modelreg.<service>.v1` imports as a regular
    # package under the `modelreg` namespace; `modelreg/` itself stays a namespace package.
    for folder in {(OUT / s).parent for s in sources}:
        while folder != OUT / "modelreg":
            (folder / "__init__.py").touch()
            folder = folder.parent
    for cache in (OUT / "modelreg").rglob("__pycache__"):
        shutil.rmtree(cache)
    print(f"generated {len(sources)} proto files into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
