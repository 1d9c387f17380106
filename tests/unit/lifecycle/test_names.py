"""Alias names, references and policy names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg_common.errors import InvalidArgument
from modelreg_lifecycle.domain.names import (
    AliasName,
    check_alias,
    parse_alias_name,
    parse_policy_name,
    parse_reference,
)


@pytest.mark.parametrize("reference", ["models/fraud@champion", "models:/fraud@champion"])
def test_both_reference_forms_resolve_to_the_same_alias(reference: str) -> None:
    assert parse_reference(reference) == AliasName("fraud", "champion")


@pytest.mark.parametrize(
    "reference",
    [
        "fraud@champion",
        "models/fraud",
        "models:/fraud",
        "models/fraud@",
        "models//x@a",
        "models:/fraud@champion/x",
        "models/fraud@latest",
        "models/fraud@v3",
        "models:fraud@a",
    ],
)
def test_bad_references_name_the_field(reference: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_reference(reference)
    assert err.value.violations[0].field == "name"


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v1", "V12", "v007"])
def test_reserved_aliases_are_rejected(alias: str) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        check_alias(alias, "alias")


@pytest.mark.parametrize("alias", ["champion", "v", "v1a", "latest2", "a_b-c", "Z"])
def test_ordinary_aliases_pass(alias: str) -> None:
    assert check_alias(alias, "alias") == alias


@pytest.mark.parametrize("alias", ["", "1st", "-a", "a b", "a/b", "a" * 129, "*"])
def test_malformed_aliases_are_rejected(alias: str) -> None:
    with pytest.raises(InvalidArgument):
        check_alias(alias, "alias")


def test_wildcard_only_where_allowed() -> None:
    assert check_alias("*", "x", allow_wildcard=True) == "*"


def test_alias_resource_names() -> None:
    assert parse_alias_name("models/fraud/aliases/champion") == AliasName("fraud", "champion")
    with pytest.raises(InvalidArgument):
        parse_alias_name("models/fraud/aliases/latest")
    with pytest.raises(InvalidArgument):
        parse_alias_name("models/fraud/champion")


def test_policy_names() -> None:
    assert parse_policy_name("policies/registry") == ""
    assert parse_policy_name("models/fraud/policy") == "fraud"
    with pytest.raises(InvalidArgument):
        parse_policy_name("models/fraud")


@given(st.text(max_size=300))
@settings(max_examples=300, derandomize=True)
def test_any_reference_parses_or_is_invalid_argument(text: str) -> None:
    try:
        parsed = parse_reference(text)
    except InvalidArgument as err:
        fields = [v.field for v in err.violations]
        assert fields == ["name"]
    else:
        assert text.endswith(f"{parsed.model}@{parsed.alias}")


@given(st.text(max_size=300))
@settings(max_examples=300, derandomize=True)
def test_any_alias_name_parses_or_is_invalid_argument(text: str) -> None:
    try:
        parsed = parse_alias_name(text)
    except InvalidArgument:
        return
    assert str(parsed) == text
