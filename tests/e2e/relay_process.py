"""Starting the relay as a real process (``aep-relay serve``) for end-to-end tests."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ZENDESK_MAPPINGS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RelayProcess:
    """``aep-relay serve`` on a free loopback port with the given environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "ZENDESK_"))}
        self.env["RELAY_STORE"] = f"sqlite:///{log_path.parent / 'relay.db'}"
        self.env["RELAY_MAPPINGS_DIR"] = str(ZENDESK_MAPPINGS)
        self.env.update(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start and wait until ``/healthz`` answers; a relay that never does is stopped and reaped.

        The timeout is generous: on a starved two-core machine starting took up to 16 s of wall time."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited with {self.process.returncode}:\n{self.logs()}")
            if self.healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"relay did not become healthy in {timeout:.0f} s:\n{self.logs()}")

    def healthy(self) -> bool:
        """``/healthz`` answers 200 (plain ``http.client``: an httpx call per poll builds an
        SSL context, tens of ms of the test process's CPU while the relay starts beside it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
