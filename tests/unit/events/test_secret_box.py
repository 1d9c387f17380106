"""The key ring that seals webhook secrets at rest, and where its keys come from."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from modelreg_events.domain.secret_box import (
    KeyRing,
    SealedSecretInvalid,
    SecretKey,
    SecretKeyError,
    UnknownKeyId,
    is_sealed,
    key_id,
    parse_keys,
)
from modelreg_events.settings import EventsSettings
from modelreg_events.store.secret_keys import GENERATED_FILE, load_key_ring

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def key(kid: str, fill: int) -> SecretKey:
    return SecretKey(kid, bytes([fill]) * 32)


def test_sealed_secret_round_trips_and_hides_the_plaintext() -> None:
    ring = KeyRing([key("a", 1)])
    sealed = ring.seal_text(SECRET, "hook-1")
    assert ring.open_text(sealed, "hook-1") == SECRET
    assert SECRET.encode() not in sealed
    assert b"k" * 32 not in sealed
    assert is_sealed(sealed)
    assert key_id(sealed) == "a"


def test_each_seal_uses_a_fresh_nonce() -> None:
    ring = KeyRing([key("a", 1)])
    assert ring.seal_text(SECRET, "hook-1") != ring.seal_text(SECRET, "hook-1")


def test_sealed_secret_of_another_webhook_is_refused() -> None:
    ring = KeyRing([key("a", 1)])
    sealed = ring.seal_text(SECRET, "hook-1")
    with pytest.raises(SealedSecretInvalid):
        ring.open_text(sealed, "hook-2")


def test_altered_ciphertext_is_refused() -> None:
    ring = KeyRing([key("a", 1)])
    sealed = bytearray(ring.seal_text(SECRET, "hook-1"))
    sealed[-1] ^= 1
    with pytest.raises(SealedSecretInvalid):
        ring.open_text(bytes(sealed), "hook-1")
    with pytest.raises(SealedSecretInvalid):
        ring.open_text(b"\x0a\x03abc", "hook-1")


def test_unknown_key_id_is_named() -> None:
    sealed = KeyRing([key("old", 1)]).seal_text(SECRET, "hook-1")
    with pytest.raises(UnknownKeyId) as err:
        KeyRing([key("new", 2)]).open_text(sealed, "hook-1")
    assert err.value.kid == "old"
    assert "old" in str(err.value)
    assert KeyRing([key("new", 2)]).unknown(["old", "new"]) == ["old"]


def test_rotation_new_key_seals_and_old_key_still_opens() -> None:
    old = KeyRing([key("k1", 1)])
    sealed_before = old.seal_text(SECRET, "hook-1")
    rotated = KeyRing([key("k2", 2), key("k1", 1)])
    assert rotated.primary == "k2"
    assert rotated.open_text(sealed_before, "hook-1") == SECRET
    sealed_after = rotated.seal_text(SECRET, "hook-1")
    assert key_id(sealed_after) == "k2"
    with pytest.raises(UnknownKeyId):
        old.open_text(sealed_after, "hook-1")


def test_key_ring_refuses_bad_keys() -> None:
    with pytest.raises(SecretKeyError):
        KeyRing([])
    with pytest.raises(SecretKeyError):
        KeyRing([key("a", 1), key("a", 2)])
    with pytest.raises(SecretKeyError):
        SecretKey("a", b"short")
    with pytest.raises(SecretKeyError):
        SecretKey("no spaces", b"x" * 32)


def test_parse_keys_reads_lists_lines_and_json() -> None:
    a, b = key("a", 1), key("b", 2)
    assert parse_keys(f"{a.line()},{b.line()}") == [a, b]
    assert parse_keys(f"# comment\n{a.line()}\n\n{b.line()}\n") == [a, b]
    assert parse_keys(f'["{a.line()}", "{b.line()}"]') == [a, b]


def test_parse_keys_errors_do_not_echo_key_material() -> None:
    with pytest.raises(SecretKeyError) as err:
        parse_keys("a:not*base64*material")
    assert "material" not in str(err.value)
    with pytest.raises(SecretKeyError):
        parse_keys("just-a-key-without-id")
    with pytest.raises(SecretKeyError):
        parse_keys('["a:AAAA", 3]')


def test_settings_take_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    a = key("env1", 7)
    monkeypatch.setenv("MODELREG_EVENTS_SECRET_KEYS", a.line())
    settings = EventsSettings()
    assert settings.secret_keys is not None
    assert a.line() not in repr(settings)  # SecretStr
    ring = load_key_ring(settings, Path("/nonexistent"))
    assert ring.key_ids == ("env1",)


def test_settings_refuse_two_key_sources(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        EventsSettings(secret_keys=SecretStr("a:AAAA"), secret_keys_file=tmp_path / "keys")


def test_keys_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{key('f2', 2).line()}\n{key('f1', 1).line()}\n")
    ring = load_key_ring(EventsSettings(secret_keys_file=path), tmp_path / "home")
    assert ring.key_ids == ("f2", "f1")
    assert not (tmp_path / "home").exists()


def test_missing_keys_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="cannot read"):
        load_key_ring(EventsSettings(secret_keys_file=tmp_path / "absent"), tmp_path)


def test_without_configured_keys_one_is_generated_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = load_key_ring(EventsSettings(), home)
    path = home / GENERATED_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = first.seal_text(SECRET, "hook-1")
    again = load_key_ring(EventsSettings(), home)
    assert again.key_ids == first.key_ids
    assert again.open_text(sealed, "hook-1") == SECRET
    assert [p.name for p in home.iterdir()] == [GENERATED_FILE]  # no temporary file left


def test_processes_starting_together_agree_on_the_generated_key(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rings: list[KeyRing] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        rings.append(load_key_ring(EventsSettings(), home))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.key_ids for r in rings}) == 1
    assert sorted(os.listdir(home)) == [GENERATED_FILE]
