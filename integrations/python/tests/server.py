"""Starts the real ``countersign`` binary on 127.0.0.1 with a fresh data directory, runs its
admin CLI, and stops it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx


def server_binary() -> Path:
    if os.environ.get("COUNTERSIGN_BIN"):
        return Path(os.environ["COUNTERSIGN_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/countersign/target")
    return Path(target) / "debug" / "countersign"


def _env() -> dict[str, str]:
    # The CLI reads defaults from COUNTERSIGN_* variables; the tests pass everything as flags so
    # a developer's own environment cannot point them at another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTERSIGN_")}
    env["RUST_LOG"] = os.environ.get("COUNTERSIGN_TEST_LOG", "info")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, extra_args: list[str], poll_interval: int = 1) -> None:
        self.bin = server_binary()
        if not self.bin.exists():
            raise RuntimeError(
                f"server binary not found at {self.bin}: build it with "
                "`cargo build -p countersign --bin countersign` or set COUNTERSIGN_BIN"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="countersign-py-"))
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args = extra_args
        self.poll_interval = poll_interval
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 30.0) -> None:
        # The port is picked here and handed to --listen: the issuer and the allowed WebAuthn
        # origins derive from it, so it cannot be 0. A lost race for the port is retried.
        for _ in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            args = [
                str(self.bin), "serve",
                "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}",
                "--public-url", self.url,
                "--poll-interval", str(self.poll_interval),
                "--checkpoint-interval-ms", "1000",
                *self.extra_args,
            ]  # fmt: skip
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_env()
                )
            if self._wait_ready(timeout):
                return
            self.stop(keep_dir=True)
            if "in use" not in self.log():
                break
        raise RuntimeError(f"server did not start:\n{self.log()[-4000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                r = httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=2.0)
                if r.status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, keep_dir: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def cli(self, *args: str) -> str:
        r = subprocess.run(
            [str(self.bin), *args, "--url", self.url, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=30,
        )
        if r.returncode != 0:
            raise RuntimeError(f"countersign {' '.join(args)} failed:\n{r.stderr}{r.stdout}")
        return r.stdout

    def add_client(self, client_id: str, secret: str) -> None:
        self.cli("client", "add", client_id, "--secret", secret)

    def add_approver(self, approver_id: str, email: str, name: str) -> str:
        """Registers an approver; returns the one-time enrolment link."""
        out = self.cli("approver", "add", approver_id, "--email", email, "--name", name)
        m = re.search(r"^(https?://\S+/enrol/\S+)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"no enrolment link in:\n{out}")
        return m.group(1)
