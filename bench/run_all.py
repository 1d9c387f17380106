"""Run every benchmark script in bench/ (w*.py, authz.py), one after another, and keep their
JSON.

Each script prints one JSON document (see bench/README.md); this collects them into
bench/results/<UTC timestamp>.json so runs compare over time. Benchmarks are not tests: they
are run by `make bench`, never by `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    scripts = sorted(p for p in [*HERE.glob("w*.py"), HERE / "authz.py"] if p.is_file())
    only = set(sys.argv[1:])
    results: dict[str, object] = {}
    failed = []
    for script in scripts:
        if only and script.stem not in only:
            continue
        print(f"== {script.name}", file=sys.stderr, flush=True)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=False
        )
        sys.stderr.write(done.stderr[-4000:])
        if done.returncode != 0:
            failed.append(script.name)
            results[script.stem] = {"error": f"exit {done.returncode}"}
            continue
        try:
            results[script.stem] = json.loads(done.stdout)
        except json.JSONDecodeError:
            failed.append(script.name)
            results[script.stem] = {"error": "no JSON on stdout", "stdout": done.stdout[-2000:]}
        print(f"   {time.monotonic() - started:.1f}s", file=sys.stderr)
    out = HERE / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(f"results in {out.relative_to(HERE.parent)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
