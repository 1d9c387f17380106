"""Webhook signing secrets sealed at rest (envelope encryption, AES-256-GCM).

HMAC signing needs the raw key on every delivery, so the secret cannot be hashed: it is
encrypted under a key-encryption key that lives outside the database (a Kubernetes Secret, or
a file under the registry home), so a database dump alone does not reveal any secret.

A sealed value is `version (1) | len(kid) (1) | kid | nonce (12) | AES-GCM ciphertext + tag`.
The associated data binds it to its row (the webhook id), so a ciphertext copied onto another
webhook does not open. A `KeyRing` holds several keys: the first seals, every one opens, so an
operator rotates the encryption key by putting a new key first and keeping the old ones until
everything sealed under them has been re-sealed (rotating a webhook's secret re-seals it).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
# The first byte of every sealed value (see is_sealed), for queries that pick them out.
SEALED_PREFIX = bytes((VERSION,))
KEY_BYTES = 32
NONCE_BYTES = 12
_KID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


class SecretKeyError(ValueError):
    """A key ring that cannot be built: a malformed entry, a duplicate id, a short key."""


class UnknownKeyId(LookupError):
    """The value was sealed under a key this process was not given."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"encryption key {kid!r} is not configured")
        self.kid = kid


class SealedSecretInvalid(ValueError):
    """The value is not a sealed secret, was altered, or belongs to another row."""


@dataclass(frozen=True)
class SecretKey:
    kid: str
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _KID.match(self.kid):
            raise SecretKeyError(f"key id {self.kid!r} must be 1-32 of [A-Za-z0-9._-]")
        if len(self.key) != KEY_BYTES:
            raise SecretKeyError(f"key {self.kid!r} must be {KEY_BYTES} bytes (AES-256)")

    @classmethod
    def generate(cls) -> SecretKey:
        # A random id: two processes that each generate a key never share an id by accident,
        # so a value sealed by the other one is reported as an unknown key, not garbled.
        return cls(f"k{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256))

    def line(self) -> str:
        """`kid:base64key`, the form `parse_keys` reads."""
        return f"{self.kid}:{base64.b64encode(self.key).decode()}"


def parse_keys(text: str) -> list[SecretKey]:
    """Keys from `kid:base64key` entries separated by commas or newlines (blank lines and
    `#` comments ignored), or from a JSON list of such strings. The first one seals."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            entries = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SecretKeyError(f"not a JSON list of `kid:base64key`: {exc.msg}") from None
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            raise SecretKeyError("a JSON list of `kid:base64key` strings is expected")
    else:
        entries = [
            part
            for line in stripped.splitlines()
            if not line.strip().startswith("#")
            for part in line.split(",")
        ]
    keys: list[SecretKey] = []
    for number, entry in enumerate((e.strip() for e in entries if e.strip()), start=1):
        kid, sep, encoded = entry.partition(":")
        if not sep:
            raise SecretKeyError(f"entry {number} must be `kid:base64key`")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            # Never echo the entry: it is key material.
            raise SecretKeyError(f"key {kid.strip()!r} is not valid base64") from None
        keys.append(SecretKey(kid.strip(), key))
    return keys


class KeyRing:
    """Seals with the first key, opens with any."""

    def __init__(self, keys: Sequence[SecretKey]) -> None:
        if not keys:
            raise SecretKeyError("at least one encryption key is needed")
        ids = [k.kid for k in keys]
        duplicates = sorted({k for k in ids if ids.count(k) > 1})
        if duplicates:
            raise SecretKeyError(f"duplicate key ids {duplicates}")
        self._primary = keys[0].kid
        self._ciphers = {k.kid: AESGCM(k.key) for k in keys}

    @property
    def primary(self) -> str:
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        kid = self._primary.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(nonce, plaintext, aad.encode())
        return bytes((VERSION, len(kid))) + kid + nonce + sealed

    def open(self, sealed: bytes, aad: str) -> bytes:
        kid = key_id(sealed)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKeyId(kid)
        start = 2 + len(kid)
        nonce, body = sealed[start : start + NONCE_BYTES], sealed[start + NONCE_BYTES :]
        try:
            return cipher.decrypt(nonce, body, aad.encode())
        except InvalidTag:
            raise SealedSecretInvalid(
                f"sealed value under key {kid!r} does not open for {aad!r}"
            ) from None

    def seal_text(self, text: str, aad: str) -> bytes:
        return self.seal(text.encode(), aad)

    def open_text(self, sealed: bytes, aad: str) -> str:
        return self.open(sealed, aad).decode()

    def unknown(self, kids: Iterable[str]) -> list[str]:
        return sorted(set(kids) - set(self._ciphers))


def is_sealed(value: bytes) -> bool:
    # A serialized protobuf message never starts with 0x01 (field number 0 is invalid), so a
    # saved response is told apart from a sealed one by its first byte.
    return len(value) > 2 + NONCE_BYTES and value[0] == VERSION


def key_id(sealed: bytes) -> str:
    """The id of the key `sealed` was sealed under."""
    if not is_sealed(sealed) or len(sealed) < 2 + sealed[1] + NONCE_BYTES + 16:
        raise SealedSecretInvalid("not a sealed value of a known version")
    try:
        return sealed[2 : 2 + sealed[1]].decode("ascii")
    except UnicodeDecodeError:
        raise SealedSecretInvalid("malformed key id") from None
