"""Where the keys that seal webhook secrets come from: settings, a file, or a file generated
once under the registry home (the embedded default)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from modelreg_common.logs import get_logger
from modelreg_events.domain.secret_box import KeyRing, SecretKey, SecretKeyError, parse_keys
from modelreg_events.settings import EventsSettings

GENERATED_FILE = "webhook-secret-keys"

log = get_logger("modelreg.events.secret_keys")


def load_key_ring(settings: EventsSettings, home: Path) -> KeyRing:
    """The configured keys; with none configured, the key generated under `home`."""
    if settings.secret_keys is not None:
        return KeyRing(parse_keys(settings.secret_keys.get_secret_value()))
    if settings.secret_keys_file is not None:
        return KeyRing(_read(settings.secret_keys_file))
    path = home / GENERATED_FILE
    if not path.exists():
        _create_once(path)
    return KeyRing(_read(path))


def _read(path: Path) -> list[SecretKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretKeyError(
            f"cannot read webhook secret keys from {path}: {exc.strerror}"
        ) from None
    try:
        return parse_keys(text)
    except SecretKeyError as exc:
        raise SecretKeyError(f"{path}: {exc}") from None


def _create_once(path: Path) -> None:
    """Write a new key to `path` unless it exists. The key is written to a private temporary
    file first and linked into place, which fails if the name exists (like O_EXCL): of two
    processes starting together exactly one creates the file, and neither can read it half
    written; the other then reads the winner's key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = SecretKey.generate()
    fd, tmp = tempfile.mkstemp(prefix=f".{GENERATED_FILE}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(
                "# Seals webhook signing secrets in the database (modelreg events).\n"
                "# Losing it loses every webhook secret; keep it with the database backups.\n"
                f"{key.line()}\n"
            )
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        except OSError:
            # No hard links on this filesystem: create the name itself exclusively.
            try:
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(out, "w", encoding="utf-8") as f:
                f.write(Path(tmp).read_text(encoding="utf-8"))
                f.flush()
                os.fsync(f.fileno())
        log.info("secret_keys.generated", path=str(path), key_id=key.kid)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
