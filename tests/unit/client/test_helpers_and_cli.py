"""Client helpers and CLI without a server: names, paths, output, exit codes, the report."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from modelreg.client import CallPolicy, DigestMismatch, NotFoundError
from modelreg.client.audit import render_markdown
from modelreg.client.cli import Output, UsageError, build_parser, run
from modelreg.client.errors import FieldViolation, InvalidArgumentError
from modelreg.client.helpers import (
    _destination,
    _files,
    _signature,
    model_name,
    version_name,
)
from modelreg.metadata.v1 import model_version_pb2


def test_model_and_version_names() -> None:
    assert model_name("fraud") == "models/fraud"
    assert model_name("models/fraud") == "models/fraud"
    assert version_name("fraud", 3) == "models/fraud/versions/3"
    assert version_name("fraud", "3") == "models/fraud/versions/3"
    assert version_name("fraud", "models/fraud/versions/7") == "models/fraud/versions/7"
    for bad in ("", "a b", "models/", "../x"):
        with pytest.raises(ValueError, match="not a model name"):
            model_name(bad)
    with pytest.raises(ValueError, match="start at 1"):
        version_name("fraud", 0)
    with pytest.raises(ValueError, match="invalid literal"):
        version_name("fraud", "three")


def test_downloads_never_leave_the_destination(tmp_path: Path) -> None:
    assert _destination(tmp_path, "a/b.bin") == tmp_path / "a" / "b.bin"
    for bad in ("../escape", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="outside"):
            _destination(tmp_path, bad)


def test_files_of_a_folder_are_sorted_relative_posix_paths(tmp_path: Path) -> None:
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "b").write_bytes(b"12")
    (tmp_path / "a").write_bytes(b"1")
    assert [(p, s) for p, _, s in _files(tmp_path)] == [("a", 1), ("z/b", 2)]
    assert [(p, s) for p, _, s in _files(tmp_path / "a")] == [("a", 1)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        _files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        _files(tmp_path / "missing")


def test_signature_from_a_dict_and_bad_enum() -> None:
    parsed = _signature({"inputs": [{"name": "x", "type": "DATA_TYPE_INT64", "shape": [-1, 3]}]})
    assert parsed is not None
    assert list(parsed.inputs[0].shape) == [-1, 3]
    with pytest.raises(Exception, match="DATA_TYPE_NOPE"):
        _signature({"inputs": [{"name": "x", "type": "DATA_TYPE_NOPE"}]})


def test_table_and_json_output() -> None:
    stream = io.StringIO()
    versions = [
        model_version_pb2.ModelVersion(
            name="models/m/versions/1", state=model_version_pb2.MODEL_VERSION_STATE_READY
        ),
        model_version_pb2.ModelVersion(name="models/m/versions/22"),
    ]
    Output(False, stream).table(versions, ["name", "state"], strip=["MODEL_VERSION_STATE_"])
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "STATE"]
    assert lines[1].split() == ["models/m/versions/1", "READY"]
    assert lines[2].split() == ["models/m/versions/22"]
    stream = io.StringIO()
    Output(True, stream).table(versions, ["name"])
    assert [v["name"] for v in json.loads(stream.getvalue())] == [
        "models/m/versions/1",
        "models/m/versions/22",
    ]
    stream = io.StringIO()
    Output(False, stream).table([], ["name"])
    assert stream.getvalue().splitlines()[-1] == "(none)"


def _args(handler: Any) -> argparse.Namespace:
    return argparse.Namespace(handler=handler, target="127.0.0.1:1", json=False)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFoundError("gone", reason="RESOURCE_NOT_FOUND", metadata={"name": "models/x"}), 5),
        (
            InvalidArgumentError(
                "bad", reason="INVALID_FIELD", field_violations=(FieldViolation("f", "why"),)
            ),
            3,
        ),
        (UsageError("no"), 3),
        (ValueError("not a model name"), 3),
        (FileNotFoundError("no file"), 5),
        (DigestMismatch("bytes differ"), 15),
    ],
)
def test_exit_codes_follow_grpc_status_numbers(
    error: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*_: Any) -> None:
        raise error

    assert run(_args(fail), io.StringIO()) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    if isinstance(error, InvalidArgumentError):
        assert "f: why" in err
        assert "reason: INVALID_FIELD" in err


def test_parser_accepts_connection_options_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    args = parser.parse_args(["models", "--target", "h:1", "list", "--json", "--token", "t"])
    assert (args.target, args.json, args.token) == ("h:1", True, "t")
    seen: dict[str, Any] = {}

    def capture(registry: Any, out: Output, a: argparse.Namespace) -> None:
        seen["token"] = registry.token

    monkeypatch.setenv("MODELREG_TOKEN", "from-env")
    args = parser.parse_args(["models", "list"])
    args.handler = capture
    assert run(args, io.StringIO()) == 0
    assert seen["token"] == "from-env"
    with pytest.raises(SystemExit) as usage:
        parser.parse_args(["alias", "set", "m"])
    assert usage.value.code == 3


def test_markdown_report_renders_every_section() -> None:
    report = {
        "model": {"name": "models/m", "created_by": "alice", "create_time": "t"},
        "generated_at": "now",
        "policies": [{"name": "models/m/policy", "rules": [{"aliases": ["champion"]}]}],
        "versions": [
            {"version": {"name": "models/m/versions/1", "state": "MODEL_VERSION_STATE_READY"},
             "lineage": {"nodes": [], "edges": []}}
        ],
        "aliases": [],
        "transition_requests": [
            {"request": {"name": "models/m/transitionRequests/r", "alias": "champion",
                         "approvals": [{"reviewer": "bob", "comment": "ok|fine"}]},
             "rules": [{"checks": ["version.ready"]}]}
        ],
        "stage_history": [],
        "deployments": [],
        "production_metrics": {"recorded": [], "degradations": []},
        "events": [{"sequence": 1, "type": "x.y", "actor": "alice"}],
        "usage": [{"model_version": "models/m/versions/1", "principal": "deployer",
                   "kind": "USAGE_KIND_DOWNLOAD", "hour_start_time": "2026-11-30T09:00:00Z",
                   "count": "3"}],
        "not_recorded": ["production metric values"],
    }  # fmt: skip
    text = render_markdown(report)
    for heading in ("# Audit report: models/m", "## Policies", "## Versions",
                    "## Transition requests and approvals", "## Alias history",
                    "## Stage history", "## Deployments", "## Production metrics",
                    "## Usage", "## Event trail", "## Not recorded"):  # fmt: skip
        assert heading in text
    assert "bob at None: ok|fine" in text
    assert "checks applied: version.ready" in text
    assert "- state: READY" in text
    assert "| 2026-11-30T09:00:00Z | models/m/versions/1 | deployer | DOWNLOAD | 3 |" in text
    # Usage that could not be read is said, not left out.
    unreadable = render_markdown({**report, "usage": {"error": "PERMISSION_DENIED: no"}})
    assert "Could not be read: PERMISSION_DENIED: no" in unreadable


class _Reply:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


class _FakeGroup:
    def __init__(self, **calls: Any) -> None:
        self.__dict__.update(calls)


def test_sync_download_refuses_bytes_that_do_not_match_the_recorded_digest(
    tmp_path: Path,
) -> None:
    from modelreg.artifact.v1 import artifact_pb2, artifact_service_pb2
    from modelreg.client.helpers import SyncHelpers

    entry = artifact_pb2.FileEntry(path="w.bin", digest="sha256:" + "0" * 64, size_bytes=3)

    class Fake(SyncHelpers):
        def __init__(self) -> None:
            self.policy = CallPolicy()
            version = model_version_pb2.ModelVersion(name="models/m/versions/1")
            self.metadata = _FakeGroup(get_model_version=lambda **_: _Reply(model_version=version))
            self.artifacts = _FakeGroup(
                list_files=lambda **_: _Reply(files=[entry], next_page_token=""),
                download=lambda **_: iter(
                    [artifact_service_pb2.DownloadResponse(file=entry, chunk=b"abc")]
                ),
            )

    with pytest.raises(DigestMismatch, match=r"w\.bin"):
        Fake().download("models/m/versions/1", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nor the file, nor a partial one


def test_a_failed_upload_marks_the_version_failed_and_raises(tmp_path: Path) -> None:
    from modelreg.client.errors import UnavailableError
    from modelreg.client.helpers import SyncHelpers

    (tmp_path / "w.bin").write_bytes(b"abc")
    failed: list[str] = []
    version = model_version_pb2.ModelVersion(name="models/m/versions/1")

    def broken_upload(requests: Any, timeout: float) -> Any:
        list(requests)
        raise UnavailableError("artifact store down")

    class Fake(SyncHelpers):
        def __init__(self) -> None:
            self.policy = CallPolicy()
            self.metadata = _FakeGroup(
                get_registered_model=lambda **_: None,
                create_model_version=lambda **_: _Reply(model_version=version),
                fail_model_version=lambda name, status_message: failed.append(status_message),
            )
            self.artifacts = _FakeGroup(upload=broken_upload)

    with pytest.raises(UnavailableError):
        Fake().register_model("m", tmp_path / "w.bin")
    assert failed == ["upload failed: UNAVAILABLE: artifact store down"]
