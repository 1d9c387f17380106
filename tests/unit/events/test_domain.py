"""Pure domain rules of the events service: filter grammar, SSRF refusals, retry delays,
signatures (server signing and the client's verifier agree)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from modelreg.events.webhooks import WebhookVerificationError, verify_signature
from modelreg_common.errors import InvalidArgument
from modelreg_common.filters import SqlParams
from modelreg_events.domain.filters import parse_filter
from modelreg_events.domain.retry import backoff_seconds, next_delay, retry_after_seconds
from modelreg_events.domain.signing import new_secret, sign, signature_header
from modelreg_events.domain.targets import check_url, refusal
from modelreg_events.store.events import compile_filter


def test_filter_compiles_to_parameterised_sql_with_subject_prefix() -> None:
    flt = parse_filter(
        'type = "model_version.created" AND subject = "models/fraud_x/*" AND actor != bob'
        ' AND time >= "2026-01-01T00:00:00Z" AND sequence > 10'
    )
    params = SqlParams()
    sql = compile_filter(flt, params)
    assert "LIKE" in sql
    assert "occurred_at" in sql
    assert params.values == [
        "model_version.created",
        "models/fraud\\_x/%",
        "bob",
        datetime(2026, 1, 1, tzinfo=UTC),
        10,
    ]
    assert parse_filter("  ").node is None
    assert compile_filter(parse_filter(""), SqlParams()) == "TRUE"


@pytest.mark.parametrize(
    "text",
    [
        'type = "nope.nope"',
        'type IN ("run.created", "nope.nope")',
        "type",
        "type =",
        'type = "run.created" run',
        'time > "yesterday"',
        "sequence > ten",
        'subject = "a*b*"',
        'subject != "a*"',
        "x = 1",
        "type = run.created AND",
    ],
)
def test_bad_filters_name_the_filter_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        compile_filter(parse_filter(text, field="filter"), SqlParams())
    assert err.value.violations[0].field == "filter"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_refusal_of_non_public_addresses(address: str, allowed: bool) -> None:
    assert (refusal(address, allow_private=False) is None) == allowed


def test_allow_private_still_refuses_metadata_and_non_unicast() -> None:
    assert refusal("127.0.0.1", allow_private=True) is None
    assert refusal("10.0.0.1", allow_private=True) is None
    assert refusal("169.254.169.254", allow_private=True) is not None
    assert refusal("0.0.0.0", allow_private=True) is not None
    assert check_url("http://127.0.0.1:8080/x", field="url", allow_private=True)
    with pytest.raises(InvalidArgument):
        check_url("http://169.254.169.254/", field="url", allow_private=True)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(n, base=1, cap=60, rng=rng) for n in range(1, 10)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(60, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 60


def test_retry_after_is_honoured_and_capped() -> None:
    assert retry_after_seconds("120") == 120
    now = datetime(2026, 1, 1, tzinfo=UTC)
    http_date = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(http_date, now=now) == pytest.approx(30)
    assert retry_after_seconds("soon") is None
    assert next_delay(1, 120.0, base=1, cap=10, retry_after_cap=3600) == 120
    assert next_delay(1, 1e9, base=1, cap=10, retry_after_cap=3600) == 3600


def test_server_signature_verifies_with_the_client_helper() -> None:
    secret, old = new_secret(), new_secret()
    body = b'{"id":"e1"}'
    headers = {
        "webhook-id": "e1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": signature_header([secret, old], "e1", 1700000000, body),
    }
    verify_signature(secret, headers, body, now=1700000010)
    verify_signature(old, headers, body, now=1700000010)
    assert sign(secret, "e1", 1700000000, body) in headers["webhook-signature"].split()
    with pytest.raises(WebhookVerificationError):
        verify_signature(new_secret(), headers, body, now=1700000010)
    with pytest.raises(WebhookVerificationError):
        verify_signature(secret, headers, body, now=1700009999)  # replayed too late
    with pytest.raises(WebhookVerificationError):
        verify_signature(secret, {**headers, "webhook-id": "e2"}, body, now=1700000010)
