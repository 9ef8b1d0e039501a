"""A small HTTP/1.1 client for probing: read-only methods, one origin, every read bounded.

``http.client`` and ``urllib`` apply a timeout to each socket operation, not to a whole
response, so a server that drips one byte every few seconds holds them for hours, and they
follow redirects anywhere. This client speaks just enough HTTP/1.1 for GET, HEAD and OPTIONS
(the only methods it will send), over a fresh connection per request with ``Connection:
close``, and checks two clocks before every read: the request's own timeout and the target's
overall deadline. Bodies are cut at a byte limit. Redirects are followed only within the same
origin (scheme, host, port); any other redirect is returned, never followed.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

#: The only methods the prober sends: none of them changes server state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_HEADER_BYTES = 64 << 10
MAX_HEADERS = 100
MAX_REDIRECTS = 3
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: ([^\r\n]*))?\r?$")


class ProbeError(Exception):
    """A request that got no usable HTTP answer. ``kind``: unreachable, timeout, tls, not-http."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    base_path: str = ""  # a path prefix the user gave (``http://h:8080/serving``)

    @classmethod
    def parse(cls, url: str) -> Origin:
        """An http(s) URL with a host; raises ``ValueError`` naming what is wrong."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: only http:// and https:// URLs can be probed")
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValueError(f"{url!r}: invalid port") from None
        if parts.username or parts.password:
            raise ValueError(f"{url!r}: credentials in the URL are not sent; remove them")
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, path: str = "") -> str:
        return f"{self.scheme}://{self.netloc}{self.base_path}{path}"

    def same(self, url: str) -> bool:
        """Whether an absolute URL points at this origin (scheme, host and port)."""
        try:
            other = Origin.parse(url)
        except ValueError:
            return False
        return (other.scheme, other.host.lower(), other.port) == (
            self.scheme, self.host.lower(), self.port)


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    url: str
    truncated: bool = False
    #: Set when the answer is a redirect to another origin that was not followed.
    offsite: str | None = None

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON, or None (not JSON, cut short, or too deep)."""
        if self.truncated:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Client:
    """Requests to one origin under one deadline (``time.monotonic()`` value)."""

    origin: Origin
    timeout: float
    deadline: float
    max_body: int = 256 << 10
    verify_tls: bool = True
    user_agent: str = "bastion-probe"
    requests: int = 0
    bytes_read: int = 0
    max_requests: int = 60
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    def get(self, path: str, headers: dict[str, str] | None = None, *,
            method: str = "GET") -> Response:
        """A request that follows redirects within the origin (at most three)."""
        target = self.origin.url(path)
        for _ in range(MAX_REDIRECTS + 1):
            response = self.request(method, target, headers)
            location = response.header("location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            nxt = urljoin(target, location)
            if not self.origin.same(nxt):
                return Response(response.status, response.reason, response.headers,
                                response.body, response.url, response.truncated, offsite=nxt)
            target = nxt
        return response

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Response:
        if method not in SAFE_METHODS:
            raise ValueError(f"the prober never sends {method} requests")
        if not self.origin.same(url):
            raise ValueError(f"{url} is outside the probed origin {self.origin.url()}")
        if self.requests >= self.max_requests:
            raise ProbeError("timeout", f"request budget of {self.max_requests} spent")
        self.requests += 1
        now = time.monotonic()
        if now >= self.deadline:
            raise ProbeError("timeout", "the per-target deadline passed")
        end = min(now + self.timeout, self.deadline)
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.origin.netloc}",
                 f"User-Agent: {self.user_agent}", "Accept: */*", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        raw = self._exchange(payload, end, head_only=method == "HEAD")
        self.bytes_read += len(raw)
        return _parse(raw, method, url, self.max_body)

    def _remaining(self, end: float) -> float:
        left = end - time.monotonic()
        if left <= 0:
            raise ProbeError("timeout", f"no complete answer within {self.timeout:g}s"
                             if end < self.deadline else "the per-target deadline passed")
        return left

    def _exchange(self, payload: bytes, end: float, *, head_only: bool) -> bytes:
        try:
            sock = socket.create_connection((self.origin.host, self.origin.port),
                                            timeout=self._remaining(end))
        except TimeoutError:
            raise ProbeError("timeout", f"connecting took longer than {self.timeout:g}s"
                             ) from None
        except socket.gaierror as exc:
            raise ProbeError("unreachable", f"unknown host {self.origin.host}: "
                             f"{exc.strerror or exc}") from None
        except OSError as exc:
            raise ProbeError("unreachable", f"cannot connect to {self.origin.netloc}: "
                             f"{exc.strerror or exc}") from None
        try:
            if self.origin.scheme == "https":
                sock = self._tls(sock, end)
            sock.settimeout(self._remaining(end))
            sock.sendall(payload)
            return self._read(sock, end, head_only)
        except ProbeError:
            raise
        except ssl.SSLError as exc:
            raise ProbeError("tls", f"TLS error: {exc.reason or exc}") from None
        except TimeoutError:
            raise ProbeError("timeout", f"no complete answer within {self.timeout:g}s"
                             ) from None
        except OSError as exc:
            raise ProbeError("unreachable", f"connection failed: {exc.strerror or exc}"
                             ) from None
        finally:
            sock.close()

    def _tls(self, sock: socket.socket, end: float) -> socket.socket:
        if self._context is None:
            context = ssl.create_default_context()
            if not self.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        sock.settimeout(self._remaining(end))
        try:
            return self._context.wrap_socket(sock, server_hostname=self.origin.host)
        except ssl.SSLCertVerificationError as exc:
            raise ProbeError("tls", f"certificate not trusted: {exc.verify_message or exc}"
                             ) from None
        except ssl.SSLError as exc:
            raise ProbeError("tls", f"TLS handshake failed: {exc.reason or exc}") from None
        except TimeoutError:
            raise ProbeError("timeout", "the TLS handshake did not finish in time") from None
        except OSError as exc:  # reset during the handshake: the port does not speak TLS
            raise ProbeError("tls", f"TLS handshake failed: {exc.strerror or exc}") from None

    def _read(self, sock: socket.socket, end: float, head_only: bool) -> bytes:
        buffer = bytearray()
        limit = self.max_body + MAX_HEADER_BYTES
        while len(buffer) <= limit:
            sock.settimeout(self._remaining(end))
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            if _complete(buffer, head_only):
                break
        return bytes(buffer)


def _split_head(raw: bytes) -> tuple[bytes, bytes] | None:
    index = raw.find(b"\r\n\r\n")
    if index < 0:
        return None
    return raw[:index], raw[index + 4:]


def _complete(buffer: bytearray, head_only: bool = False) -> bool:
    """Whether a whole response is in the buffer (Content-Length reached, last chunk seen;
    the headers alone for HEAD)."""
    split = _split_head(bytes(buffer[:MAX_HEADER_BYTES + 4]))
    if split is None:
        return False
    if head_only:
        return True
    head, _ = split
    body_len = len(buffer) - len(head) - 4
    lowered = head.lower()
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", lowered)
    if match:
        return body_len >= int(match.group(1))
    if b"\r\ntransfer-encoding:" in lowered and b"chunked" in lowered:
        return buffer.endswith(b"0\r\n\r\n")
    status = _STATUS.match(head.split(b"\r\n", 1)[0])
    return status is not None and status.group(1) in (b"204", b"304")


def _parse(raw: bytes, method: str, url: str, max_body: int) -> Response:
    if not raw:
        raise ProbeError("not-http", "the server closed the connection without answering")
    split = _split_head(raw)
    first = raw.split(b"\n", 1)[0].rstrip(b"\r")
    status = _STATUS.match(first)
    if status is None:
        shown = first[:60].decode("latin-1")
        raise ProbeError("not-http", f"not an HTTP response (starts with {shown!r})")
    if split is None:
        if len(raw) > MAX_HEADER_BYTES:
            raise ProbeError("not-http", "response headers over the size limit")
        raise ProbeError("not-http", "the response headers never ended")
    head, body = split
    header_lines = head.split(b"\r\n")[1:]
    if len(header_lines) > MAX_HEADERS:
        raise ProbeError("not-http", f"more than {MAX_HEADERS} response headers")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ProbeError("not-http", "malformed response header")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    code = int(status.group(1))
    if method == "HEAD" or code in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    truncated = False
    if method == "HEAD" or code in (204, 304):
        pass
    elif headers.get("content-length", "").isdigit():
        length = int(headers["content-length"])
        truncated = len(body) < length
        body = body[:length]
    truncated = truncated or len(body) > max_body
    return Response(code, (status.group(2) or b"").decode("latin-1"), headers,
                    body[:max_body], url, truncated)


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    position = 0
    while position < len(body):
        end = body.find(b"\r\n", position)
        if end < 0:
            break
        size_text = body[position:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            break
        if size == 0:
            break
        out += body[end + 2:end + 2 + size]
        position = end + 2 + size + 2
    return bytes(out)
