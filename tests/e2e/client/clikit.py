"""The `modelreg` client command run in-process against a test server."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from modelreg.client.cli import main as client_main


class Cli:
    """Runs `modelreg ...` in a worker thread (the sync client must not block the server's
    event loop) and returns (exit code, stdout, stderr)."""

    def __init__(self, target: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.target = target
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        # Its own stdout: the in-process server logs to the captured one.
        out = io.StringIO()
        code = await asyncio.to_thread(client_main, [*argv, "--target", self.target], out)
        return code, out.getvalue(), self.capsys.readouterr().err

    async def json(self, *argv: str) -> Any:
        code, out, err = await self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)
