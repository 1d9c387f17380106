from __future__ import annotations

import pytest

from modelreg_common.errors import InvalidArgument
from modelreg_common.page_tokens import PageTokens, fingerprint, page_size

KEY = b"k" * 32


def test_round_trip_returns_the_last_key() -> None:
    tokens = PageTokens(KEY)
    query = fingerprint("models/a", "tags.team = 'a'", "create_time desc")
    token = tokens.encode(query, ["2025-01-01T00:00:00Z", 42])
    assert tokens.decode(token, query) == ["2025-01-01T00:00:00Z", 42]
    assert tokens.decode("", query) is None


def test_token_from_another_query_is_invalid_argument() -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode(fingerprint("a"), [1])
    with pytest.raises(InvalidArgument) as err:
        tokens.decode(token, fingerprint("b"))
    assert err.value.violations[0].field == "page_token"
    assert "different query" in err.value.violations[0].description


@pytest.mark.parametrize("token", ["garbage", "!!!", "AAAA", "a" * 500])
def test_forged_or_garbled_token_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument):
        PageTokens(KEY).decode(token, fingerprint("a"))


def test_token_signed_with_another_key_is_refused() -> None:
    token = PageTokens(b"x" * 32).encode(fingerprint("a"), [1])
    with pytest.raises(InvalidArgument):
        PageTokens(KEY).decode(token, fingerprint("a"))


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert page_size(0) == 50
    assert page_size(10) == 10
    assert page_size(5000) == 1000
    with pytest.raises(InvalidArgument):
        page_size(-1)
