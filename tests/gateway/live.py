"""Real gateway processes for the live tests: ``bastion serve`` on 127.0.0.1.

Each gateway is the real command in its own process group (so a test can ``kill -9`` it, or
send ``SIGTERM`` and watch it drain), on a free port, writing its output to a log file the
tests read back (no pipe that could fill up and stall it). :func:`start` returns once
``/readyz`` answers 200, or fails with the log's tail when the process died or the deadline
passed. :meth:`Gateway.close` always leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.conftest import cli_env

#: How long a gateway may take to answer /readyz (a loaded 2-core machine starts it in ~2 s).
READY_DEADLINE = 60.0


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice; a clash after this is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    """One ``bastion serve`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    stopped: int | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the gateway's whole process group."""
        if self.running():
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        self.stopped = self.proc.wait(timeout)
        return self.stopped

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush."""
        self.signal(signal.SIGKILL)
        self.wait(30)

    def close(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after a grace period) and reap it."""
        if self.running():
            self.signal(signal.SIGTERM)
            try:
                self.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.stopped = self.proc.wait()


def start(args: list[str], *, log: Path, cwd: Path, env: dict[str, str] | None = None,
          port_from_env: bool = False, tries: int = 3) -> Gateway:
    """``python -m bastion serve ARGS --host 127.0.0.1 --port P`` on a free port, ready to
    serve; with ``port_from_env``, the host and port go in ``BASTION_GATEWAY_HOST/PORT``."""
    environ = cli_env()
    environ.update(env or {})
    for attempt in range(tries):
        port = free_port()
        where = ["--host", "127.0.0.1", "--port", str(port)]
        if port_from_env:
            environ.update(BASTION_GATEWAY_HOST="127.0.0.1", BASTION_GATEWAY_PORT=str(port))
            where = []
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "serve", *where, *args],
                cwd=cwd, env=environ, stdin=subprocess.DEVNULL, stdout=handle,
                stderr=subprocess.STDOUT, start_new_session=True)
        gateway = Gateway(proc, port, log)
        try:
            _wait_ready(gateway)
            return gateway
        except RuntimeError:
            gateway.close()
            if "address already in use" in gateway.output() and attempt + 1 < tries:
                continue  # another process took the port meanwhile: draw another
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _wait_ready(gateway: Gateway) -> None:
    deadline = time.monotonic() + READY_DEADLINE
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if not gateway.running():
                raise RuntimeError(f"the gateway exited with {gateway.proc.returncode}:\n"
                                   f"{gateway.output()[-3000:]}")
            try:
                if client.get(f"{gateway.url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"the gateway was not ready within {READY_DEADLINE:.0f} s:\n"
                       f"{gateway.output()[-3000:]}")
