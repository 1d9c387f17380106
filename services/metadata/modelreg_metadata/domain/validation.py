"""Input limits and checks; every violation names its request field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from modelreg_common.errors import FieldViolation, InvalidArgument
from modelreg_metadata.domain.models import (
    CodeVersion,
    DatasetInput,
    MetricPoint,
    Signature,
    SignatureField,
)

MAX_KEY_BYTES = 250
MAX_TAG_VALUE_BYTES = 64 * 1024
MAX_PARAM_VALUE_BYTES = 64 * 1024
MAX_TAGS = 100
MAX_PARAMS_PER_CALL = 1000
MAX_METRICS_PER_CALL = 10_000
MAX_INPUTS = 100
MAX_DESCRIPTION_BYTES = 64 * 1024
MAX_TEXT_BYTES = 2048
MAX_SIGNATURE_FIELDS = 1000
MAX_SHAPE_RANK = 32
MAX_REQUEST_ID = 128
DATA_TYPES = frozenset(
    {
        "BOOL",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "FLOAT16",
        "FLOAT32",
        "FLOAT64",
        "STRING",
        "BYTES",
        "DATETIME",
        "OBJECT",
    }
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Violations:
    """Collects every problem of a request, then raises them together."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.of(self.items[:50])


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_key(v: Violations, field: str, key: str) -> None:
    if not key:
        v.add(field, "key must not be empty")
    elif _size(key) > MAX_KEY_BYTES:
        v.add(field, f"key longer than {MAX_KEY_BYTES} bytes")
    elif _CONTROL.search(key):
        v.add(field, "key contains control characters")


def check_text(v: Violations, field: str, value: str, limit: int = MAX_TEXT_BYTES) -> None:
    if _size(value) > limit:
        v.add(field, f"longer than {limit} bytes")
    elif "\x00" in value:
        v.add(field, "contains a NUL character")


def check_tags(
    v: Violations, field: str, tags: Mapping[str, str], *, limit: int = MAX_TAGS
) -> None:
    if len(tags) > limit:
        v.add(field, f"more than {limit} tags")
        return
    for key, value in tags.items():
        check_key(v, f"{field}[{key[:60]!r}]", key)
        check_text(v, f"{field}[{key[:60]!r}]", value, MAX_TAG_VALUE_BYTES)


def check_request_id(v: Violations, request_id: str) -> None:
    if request_id and not _REQUEST_ID.match(request_id):
        v.add("request_id", "must be 1-128 of letters, digits, '.', '_', ':' or '-'")


def _check_fields(v: Violations, field: str, items: Iterable[SignatureField]) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        check_key(v, f"{where}.name", item.name)
        if item.name in seen:
            v.add(f"{where}.name", f"duplicate name {item.name[:60]!r}")
        seen.add(item.name)
        if item.type not in DATA_TYPES:
            v.add(f"{where}.type", "must be set to a DataType other than UNSPECIFIED")
        if len(item.shape) > MAX_SHAPE_RANK:
            v.add(f"{where}.shape", f"more than {MAX_SHAPE_RANK} dimensions")
        if any(d < -1 for d in item.shape):
            v.add(f"{where}.shape", "dimensions are >= 0, or -1 for a variable one")
        check_text(v, f"{where}.default_value", item.default_value)


def check_signature(v: Violations, field: str, signature: Signature) -> None:
    total = len(signature.inputs) + len(signature.outputs) + len(signature.params)
    if total > MAX_SIGNATURE_FIELDS:
        v.add(field, f"more than {MAX_SIGNATURE_FIELDS} fields")
        return
    _check_fields(v, f"{field}.inputs", signature.inputs)
    _check_fields(v, f"{field}.outputs", signature.outputs)
    _check_fields(v, f"{field}.params", signature.params)


def check_metrics(v: Violations, field: str, metrics: Iterable[MetricPoint]) -> None:
    for i, m in enumerate(metrics):
        # Any double is accepted: NaN and +/-Inf are explicit IEEE values, stored as sent.
        check_key(v, f"{field}[{i}].key", m.key)


def check_inputs(v: Violations, field: str, inputs: Iterable[DatasetInput]) -> None:
    for i, d in enumerate(inputs):
        where = f"{field}[{i}]"
        if not d.name:
            v.add(f"{where}.name", "must not be empty")
        check_text(v, f"{where}.name", d.name, MAX_KEY_BYTES)
        if not d.digest:
            v.add(f"{where}.digest", "must not be empty: it identifies the dataset")
        check_text(v, f"{where}.digest", d.digest, MAX_KEY_BYTES)
        check_text(v, f"{where}.source_uri", d.source_uri)
        check_text(v, f"{where}.schema", d.schema, MAX_TAG_VALUE_BYTES)
        check_text(v, f"{where}.context", d.context, MAX_KEY_BYTES)


def check_code(v: Violations, field: str, code: CodeVersion) -> None:
    check_text(v, f"{field}.repository_url", code.repository_url)
    check_text(v, f"{field}.commit", code.commit, MAX_KEY_BYTES)
    check_text(v, f"{field}.entry_point", code.entry_point)
