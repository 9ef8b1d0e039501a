"""Where a server listens: loopback only, every interface, or one other address."""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from urllib.parse import urlsplit


class Reach(Enum):
    LOOPBACK = "loopback"  # 127.0.0.0/8, ::1, localhost: this machine only
    ALL = "all interfaces"  # 0.0.0.0, ::, *, empty: every network the host is on
    OTHER = "a non-loopback address"  # one interface, reachable from its network
    UNKNOWN = "unknown"  # a variable (${HOST}) or a unix socket


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})?")
_WILDCARDS = {"0.0.0.0", "::", "*", "", "[::]"}  # noqa: S104 - we classify, never bind


def reach(host: str) -> Reach:
    """Classify a bind host (``0.0.0.0``, ``localhost``, ``[::1]``, ``10.0.0.5``...)."""
    host = host.strip().strip("'\"")
    if host in _WILDCARDS:
        return Reach.ALL
    if "$" in host or "{" in host or "<" in host:
        return Reach.UNKNOWN
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare.lower() in ("localhost", "ip6-localhost", "localhost.localdomain"):
        return Reach.LOOPBACK
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if not _HOST_NAME.fullmatch(bare):
            return Reach.UNKNOWN  # not an address or a host name: nothing to judge
        return Reach.OTHER  # a host name other than localhost resolves to some interface
    if address.is_loopback:
        return Reach.LOOPBACK
    if address.is_unspecified:
        return Reach.ALL
    return Reach.OTHER


def url_reach(url: str) -> tuple[Reach, str]:
    """The reach of a listen URL such as TorchServe's ``http://0.0.0.0:8081``, and its host."""
    text = url.strip()
    if not text or text.startswith("unix:"):
        return Reach.UNKNOWN, text
    if "://" not in text:
        text = "http://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return Reach.UNKNOWN, url
    if host is None:
        return Reach.ALL, ""  # http://:8080 binds every interface
    return reach(host), host


def exposed(kind: Reach) -> bool:
    """Reachable from another machine."""
    return kind in (Reach.ALL, Reach.OTHER)
