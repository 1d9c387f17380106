"""Input checks of the artifact domain: paths, owners, digests, upload names."""

from __future__ import annotations

import hashlib

import pytest

from modelreg_artifact.domain import validation
from modelreg_artifact.domain.models import Part, contiguous_parts, manifest_digest
from modelreg_common.errors import InvalidArgument


def normalize(path: str) -> str:
    return validation.normalize_path(path, "path", max_bytes=1024, max_segment_bytes=255)


@pytest.mark.parametrize(
    "path",
    ["model.bin", "a/b/c.txt", "weights/v1.0/part-0001", "naïve/ünïcode", "..hidden", "a..b"],
)
def test_good_paths_are_kept(path: str) -> None:
    assert normalize(path) == path


def test_paths_are_nfc_normalised() -> None:
    decomposed = "cafe\u0301.txt"
    assert normalize(decomposed) == "caf\u00e9.txt"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("/abs", "relative"),
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("./a", "'.'"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a//b", "empty segments"),
        ("a/", "empty segments"),
        ("a\tb", "control"),
        ("x" * 256, "255 bytes"),
        ("é" * 128, "255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["a" * 100] * 11), "1024 bytes"),
    ],
)
def test_bad_paths_name_the_field(path: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        normalize(path)
    assert err.value.violations[0].field == "path"
    assert why in err.value.violations[0].description


@pytest.mark.parametrize(
    ("owner", "canonical"),
    [
        ("models/fraud/versions/3", "models/fraud/versions/3"),
        ("experiments/churn/runs/r-8f2c", "experiments/churn/runs/r-8f2c"),
    ],
)
def test_owners_are_versions_or_runs(owner: str, canonical: str) -> None:
    assert validation.parse_owner(owner) == canonical


@pytest.mark.parametrize(
    "owner",
    ["", "models/fraud", "models/fraud/versions/01", "experiments/e", "x/y", "models//versions/1"],
)
def test_other_owners_are_invalid(owner: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validation.parse_owner(owner, "header.owner")
    assert err.value.violations[0].field == "header.owner"


def test_digest_format() -> None:
    good = "sha256:" + "0" * 64
    assert validation.check_digest(good, "d") == good
    for bad in ["sha256:" + "0" * 63, "sha256:" + "G" * 64, "md5:" + "0" * 32, "0" * 64]:
        with pytest.raises(InvalidArgument):
            validation.check_digest(bad, "d")
    assert validation.optional_digest("", "d") is None


def test_upload_names() -> None:
    name = "uploads/12345678-1234-5678-1234-567812345678"
    assert str(validation.parse_upload_name(name)) == name.removeprefix("uploads/")
    for bad in [
        "uploads/x",
        "12345678-1234-5678-1234-567812345678",
        "uploads/zzzzzzzz-1234-5678-1234-567812345678",
    ]:
        with pytest.raises(InvalidArgument):
            validation.parse_upload_name(bad)


def test_media_types() -> None:
    assert validation.media_type("") == "application/octet-stream"
    assert validation.media_type("application/x-onnx") == "application/x-onnx"
    with pytest.raises(InvalidArgument):
        validation.media_type("text")


def test_manifest_digest_is_order_independent_and_sorted_by_bytes() -> None:
    a = ("b.txt", "sha256:" + "1" * 64, 1)
    b = ("a/z.txt", "sha256:" + "2" * 64, 2)
    assert manifest_digest([a, b]) == manifest_digest([b, a])
    lines = f"{b[0]}\t{b[1]}\t{b[2]}\n{a[0]}\t{a[1]}\t{a[2]}\n".encode()
    assert manifest_digest([a, b]) == f"sha256:{hashlib.sha256(lines).hexdigest()}"
    assert manifest_digest([]) == f"sha256:{hashlib.sha256(b'').hexdigest()}"
    assert manifest_digest([a]) != manifest_digest([(a[0], a[1], 2)])


def test_contiguous_parts_stop_at_the_first_gap() -> None:
    parts = [Part(1, "a", 5), Part(2, "b", 5), Part(4, "d", 5)]
    assert [p.number for p in contiguous_parts(parts)] == [1, 2]
    assert contiguous_parts([Part(2, "b", 5)]) == []
