"""The shell walkthrough in docs/client.md, run as written with bash against `modelreg serve`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.journey.serving import serve

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "client.md"
README = ROOT / "README.md"


def walkthrough(doc: Path = DOC) -> str:
    text = doc.read_text()
    block = re.search(
        r"<!-- walkthrough:start -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->", text, re.S
    )
    assert block is not None, f"{doc.name} lost its walkthrough block"
    return block.group(1)


def test_readme_walkthrough_is_the_tested_one() -> None:
    assert walkthrough(README) == walkthrough(DOC)


@pytest.fixture
def served(dsn: str, tmp_path: Path) -> Iterator[str]:
    with serve(dsn, tmp_path / "home", {"alice-token": "alice", "bob-token": "bob"}) as target:
        yield target


def test_the_documented_walkthrough_runs_as_written(served: str, tmp_path: Path) -> None:
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and sha256sum")
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    # As with an active virtualenv: `modelreg` and `python` from this interpreter's bin.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    script = walkthrough().replace("127.0.0.1:50051", served)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "refused: alice cannot approve her own request" in out
    assert "PERMISSION_DENIED" in done.stderr
    assert "DEGRADED: accuracy = 0.72 breaks accuracy >= 0.8" in out
    # After the rollback, champion is version 1 again.
    shown = out[out.rindex("name ") :].splitlines()[0]
    assert shown.split()[-1] == "models/fraud/versions/1"
    assert (work / "fraud-champion" / "model.bin").read_text() == "weights v2\n"
    report = (work / "fraud-audit.md").read_text()
    assert report.startswith("# Audit report: models/fraud")
    assert "bob at" in report
