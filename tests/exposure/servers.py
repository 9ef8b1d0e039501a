"""Servers for the probe tests, all on 127.0.0.1.

Real servers (Jupyter Server, MLflow, Ray) run as subprocesses in their own session on free
ports; :func:`started` waits for readiness with a deadline and always kills the whole process
group. Small socket servers play the misbehaving endpoints (silent, garbage, slow, redirecting)
and the Bastion gateway's documented contract.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def started(argv: list[str], ready_url: str, log: Path, *, env: dict[str, str] | None = None,
            deadline: float = 120.0, base_url: str | None = None,
            cwd: Path | None = None) -> Iterator[Process]:
    """Run a server until the block ends; fail (with its log) if not ready in time."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                cwd=cwd)
    try:
        end = time.monotonic() + deadline
        while not _ready(ready_url):
            if proc.poll() is not None or time.monotonic() > end:
                text = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{argv[0]} did not become ready: {text}")
            time.sleep(0.5)
        yield Process(base_url or ready_url, proc, log)
    finally:
        _stop(proc)


def http(method: str, url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """The test's own requests (set-up, and checking state after a probe)."""
    request = urllib.request.Request(url, data=data, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return int(exc.code), body


# -- socket servers -----------------------------------------------------------------------------

Handler = Callable[[socket.socket], None]


class SocketServer:
    """Accepts connections on a free port and hands each to ``handler`` on a thread."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SocketServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self._conns:
            conn.close()
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with suppress(OSError):
            self.handler(conn)

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        conn.settimeout(5)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
            if not data[:1].isalpha():  # not a request line (a TLS hello): answer at once,
                break  # as nginx and uvicorn do
        self.requests.append(data)
        return data


def silent(server: SocketServer) -> Handler:
    """Accepts, reads the request, never answers."""

    def handle(conn: socket.socket) -> None:
        server.read_request(conn)
        server._stop.wait(60)

    return handle


def garbage(server: SocketServer) -> Handler:
    def handle(conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"\x16\x03\x01\x02\x00SSH-2.0-OpenSSH_9.6\r\n\xff\xfe garbage \x00\x01")
        conn.close()

    return handle


def dripping(server: SocketServer, delay: float = 0.3) -> Handler:
    """A valid start, then one byte every ``delay`` seconds, forever (slowloris in reverse)."""

    def handle(conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
        while not server._stop.wait(delay):
            conn.sendall(b"X")

    return handle


def redirecting(server: SocketServer, location: str) -> Handler:
    def handle(conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall((f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n").encode())
        conn.close()

    return handle


def routes(server: SocketServer, table: Callable[[str, str, dict[str, str]],
                                                 tuple[int, dict[str, str], bytes]]) -> Handler:
    """A tiny HTTP/1.1 server: ``table(method, path, headers) -> (status, headers, body)``."""

    def handle(conn: socket.socket) -> None:
        request = server.read_request(conn)
        if not request[:1].isalpha():
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            conn.close()
            return
        raw = request.decode("latin-1")
        first, _, rest = raw.partition("\r\n")
        method, path, _version = ([*first.split(" "), "", "", ""])[:3]
        headers = {}
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        status, extra, body = table(method, path, headers)
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        conn.sendall(head.encode() + b"\r\n" + body)
        conn.close()

    return handle


def gateway_contract(valid_token: str) -> Callable[[str, str, dict[str, str]],
                                                   tuple[int, dict[str, str], bytes]]:
    """What Bastion's gateway promises: ``/healthz`` names it; ``/v1/models`` needs a valid
    bearer token (401 otherwise)."""
    json_type = {"Content-Type": "application/json"}

    def table(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str],
                                                                        bytes]:
        if path == "/healthz":
            return 200, json_type, json.dumps({"status": "ok", "service": "bastion-gateway",
                                               "version": "0.1.0"}).encode()
        if path == "/v1/models":
            if headers.get("authorization") == f"Bearer {valid_token}":
                return 200, json_type, b'{"models": [{"name": "fraud-detector"}]}'
            return 401, {**json_type, "WWW-Authenticate": "Bearer"}, \
                b'{"error": "unauthenticated"}'
        return 404, json_type, b'{"error": "not found"}'

    return table
