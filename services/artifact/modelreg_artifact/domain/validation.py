"""Checks of caller input at the domain's edge; each failure names its field."""

from __future__ import annotations

import re
import unicodedata
import uuid

from modelreg_common.errors import InvalidArgument
from modelreg_common.names import parse_model_version, parse_run

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
_UPLOAD = re.compile(r"^uploads/([0-9a-f-]{36})$")
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def parse_owner(value: str, field: str = "owner") -> str:
    """A model version or a run, in canonical form."""
    if value.startswith("models/"):
        return str(parse_model_version(value, field))
    if value.startswith("experiments/"):
        return str(parse_run(value, field))
    raise InvalidArgument(
        field,
        "expected models/{model}/versions/{number} or experiments/{experiment}/runs/{run}, "
        f"got {value[:200]!r}",
    )


def normalize_path(value: str, field: str, *, max_bytes: int, max_segment_bytes: int) -> str:
    """A relative file path, NFC-normalised, `/`-separated; anything that could escape the
    owner's folder or mean two things is refused."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL bytes")
    if "\\" in value:
        raise InvalidArgument(field, "must use '/' as separator, not backslashes")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidArgument(field, "must not contain control characters")
    path = unicodedata.normalize("NFC", value)
    if path.startswith("/"):
        raise InvalidArgument(field, "must be relative, not absolute")
    if len(path.encode()) > max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes")
    for segment in path.split("/"):
        if not segment:
            raise InvalidArgument(field, "must not have empty segments ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise InvalidArgument(field, "must not contain '.' or '..' segments")
        if len(segment.encode()) > max_segment_bytes:
            raise InvalidArgument(field, f"segments must be at most {max_segment_bytes} bytes")
    return path


def check_digest(value: str, field: str) -> str:
    if not _DIGEST.match(value):
        raise InvalidArgument(
            field, f"expected sha256:<64 lowercase hex digits>, got {value[:80]!r}"
        )
    return value


def optional_digest(value: str, field: str) -> str | None:
    return check_digest(value, field) if value else None


def optional_size(value: int, field: str) -> int | None:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return value or None


def media_type(value: str, field: str = "media_type") -> str:
    if not value:
        return DEFAULT_MEDIA_TYPE
    if not _MEDIA_TYPE.match(value):
        raise InvalidArgument(field, f"expected type/subtype, got {value[:80]!r}")
    return value


def parse_upload_name(value: str, field: str = "name") -> uuid.UUID:
    match = _UPLOAD.match(value)
    if match is None:
        raise InvalidArgument(field, f"expected uploads/{{uuid}}, got {value[:200]!r}")
    try:
        return uuid.UUID(match[1])
    except ValueError:
        raise InvalidArgument(field, f"expected uploads/{{uuid}}, got {value[:200]!r}") from None
