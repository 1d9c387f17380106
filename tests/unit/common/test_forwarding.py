"""The web gateway's forwarded peer is believed only with this process's secret."""

from __future__ import annotations

from modelreg_common.forwarding import (
    FORWARDED_FOR,
    FORWARDER,
    forwarded_peer,
    forwarding_metadata,
)


def test_the_gateways_own_metadata_is_believed() -> None:
    metadata = dict(forwarding_metadata("203.0.113.9", 51234))
    assert metadata[FORWARDED_FOR] == "ipv4:203.0.113.9:51234"
    assert forwarded_peer(metadata[FORWARDED_FOR], metadata[FORWARDER]) == "ipv4:203.0.113.9:51234"
    ipv6 = dict(forwarding_metadata("2001:db8::7", 443))
    assert ipv6[FORWARDED_FOR] == "ipv6:[2001:db8::7]:443"


def test_anything_else_is_not() -> None:
    secret = dict(forwarding_metadata("203.0.113.9", 1))[FORWARDER]
    assert forwarded_peer("ipv4:203.0.113.9:1", None) is None
    assert forwarded_peer("ipv4:203.0.113.9:1", "guess") is None
    assert forwarded_peer("ipv4:203.0.113.9:1", secret + "x") is None
    assert forwarded_peer(None, secret) is None
    assert forwarded_peer("", secret) is None
    assert forwarded_peer("x" * 129, secret) is None
