"""``bastion scan --from FILE``: the inputs of a bulk scan as a list, e.g. fed by a registry.

One path or URL per line; blank lines and lines starting with ``#`` are skipped; ``-`` reads
the list from standard input. Paths are relative to the manifest's folder (to the current
folder for standard input) and are walked like paths on the command line (folders too).
URLs must be http or https: each is downloaded, bounded in size and time, into a private
temporary folder and scanned there under its URL (user name, password and query string left
out of what the report shows); the folder is removed after the scan. Downloads happen before
the scan starts, so a list of many large URLs needs as much free space; split it if not.

A line that cannot be scanned (missing path, other scheme, HTTP error, too large) is a
finding at that line of the manifest (:mod:`bastion.scale.rules`), never a crash: the rest
of the list is scanned and the gate fails closed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bastion import __version__
from bastion.errors import UsageError
from bastion.findings import Finding, Location
from bastion.scale.rules import DOWNLOAD_FAILED, INPUT_INVALID, INPUT_MISSING
from bastion.walk import FileEntry

#: Largest manifest read (a million 64-character paths).
MAX_MANIFEST = 64 << 20
#: Longest line taken as an entry.
MAX_LINE = 8192
#: Largest download, per URL.
MAX_DOWNLOAD = 4 << 30
#: Seconds a connection or a read may stall; and the whole of one download.
TIMEOUT = 30.0
DEADLINE = 1800.0
#: Downloads at once.
DOWNLOADERS = 4

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class ManifestInputs:
    """What a manifest asks to scan: paths to walk, downloaded files, findings for bad lines."""

    paths: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    folder: Path | None = None  # the downloads' temporary folder

    def cleanup(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def read_lines(source: str, stdin: IO[bytes] | None = None) -> tuple[str, str, list[str]]:
    """(display name, base folder, lines) of the manifest ``source`` (``-``: standard input)."""
    if source == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(MAX_MANIFEST + 1)
        display, base = "<stdin>", ""
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(MAX_MANIFEST + 1)
        except FileNotFoundError:
            raise UsageError(f"--from {source}: file not found") from None
        except IsADirectoryError:
            raise UsageError(f"--from {source}: is a folder, not a list of paths") from None
        except OSError as exc:
            raise UsageError(f"--from {source}: cannot read: {exc.strerror or exc}") from None
        display, base = source, os.path.dirname(source)
    if len(data) > MAX_MANIFEST:
        raise UsageError(f"--from {display}: larger than {MAX_MANIFEST >> 20} MiB; split it")
    text = data.decode("utf-8", "surrogateescape")
    return display, base, text.splitlines()


def load(source: str, *, stdin: IO[bytes] | None = None, max_download: int | None = None,
         timeout: float | None = None, deadline: float | None = None) -> ManifestInputs:
    """Read a manifest, check its paths and download its URLs (bounds default to
    :data:`MAX_DOWNLOAD`, :data:`TIMEOUT` and :data:`DEADLINE`)."""
    display, base, lines = read_lines(source, stdin)
    out = ManifestInputs()
    urls: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = Location(path=display, line=number)
        if len(line) > MAX_LINE or "\0" in line:
            why = "longer than 8192 characters" if len(line) > MAX_LINE else "holds a NUL byte"
            out.findings.append(INPUT_INVALID.finding(where, f"line {number} {why}",
                                                      evidence=line[:200]))
            continue
        scheme = _SCHEME.match(line)
        if scheme:
            if scheme.group(1).lower() in ("http", "https"):
                urls.append((number, line))
            else:
                out.findings.append(INPUT_INVALID.finding(
                    where, f"line {number}: unsupported URL scheme {scheme.group(1)!r} "
                    "(only http and https are downloaded; give files as paths)",
                    evidence=shown_url(line)))
            continue
        path = os.path.join(base, line)
        if not os.path.lexists(path):
            out.findings.append(INPUT_MISSING.finding(
                where, f"line {number}: {line!r} does not exist"
                + (f" (relative to {base!r})" if base and not os.path.isabs(line) else ""),
                evidence=line))
            continue
        out.paths.append(path)
    if urls:
        _download_all(urls, display, out, MAX_DOWNLOAD if max_download is None else max_download,
                      TIMEOUT if timeout is None else timeout,
                      DEADLINE if deadline is None else deadline)
    return out


def shown_url(url: str) -> str:
    """The URL as reports show it: no user name or password, no query string or fragment
    (signed URLs carry their credentials there)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return url.split("?", 1)[0].split("#", 1)[0]
    hidden = "?…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + hidden


def _download_all(urls: Sequence[tuple[int, str]], display: str, out: ManifestInputs,
                  max_download: int, timeout: float, deadline: float) -> None:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    out.folder = Path(tempfile.mkdtemp(prefix="bastion-downloads-"))
    folder = out.folder

    def fetch(item: tuple[int, tuple[int, str]]) -> FileEntry | Finding:
        slot, (number, url) = item
        dest = folder / str(slot)
        dest.mkdir()
        try:
            path = download(url, dest, max_bytes=max_download, timeout=timeout,
                            deadline=deadline)
        except DownloadError as exc:
            return DOWNLOAD_FAILED.finding(Location(path=display, line=number),
                                           f"line {number}: {shown_url(url)}: {exc}",
                                           evidence=shown_url(url))
        return FileEntry(path, shown_url(url), path.stat().st_size)

    with ThreadPoolExecutor(DOWNLOADERS, thread_name_prefix="bastion-download") as pool:
        for result in pool.map(fetch, enumerate(urls)):
            if isinstance(result, FileEntry):
                out.files.append(result)
            else:
                out.findings.append(result)


class DownloadError(Exception):
    """Why a URL could not be downloaded, in one line."""


def download(url: str, dest: Path, *, max_bytes: int = MAX_DOWNLOAD, timeout: float = TIMEOUT,
             deadline: float = DEADLINE) -> Path:
    """Fetch an http(s) URL into ``dest`` (a folder), bounded in size and time; the file keeps
    the URL's last path component as its name, so name-based formats are recognised."""
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit

    class _Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
            if urlsplit(newurl).scheme.lower() not in ("http", "https"):
                raise DownloadError(f"redirected to another scheme: {shown_url(newurl)}")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    name = _SAFE_NAME.sub("_", unquote(urlsplit(url).path).rsplit("/", 1)[-1])[-128:]
    path = dest / (name.strip(".") or "download")
    opener = urllib.request.build_opener(_Redirects)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError("only http and https URLs are downloaded")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above, and on redirects)
        url, headers={"User-Agent": f"bastion/{__version__}"})
    started = time.monotonic()
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise DownloadError(f"{int(length)} bytes is over the download limit of "
                                    f"{max_bytes}")
            total = 0
            with path.open("wb") as handle:
                while chunk := response.read(1 << 20):
                    total += len(chunk)
                    if total > max_bytes:
                        raise DownloadError(f"more than the download limit of {max_bytes} "
                                            "bytes")
                    if time.monotonic() - started > deadline:
                        raise DownloadError(f"took longer than {deadline:.0f} s")
                    handle.write(chunk)
    except DownloadError:
        path.unlink(missing_ok=True)
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs, bad responses
        path.unlink(missing_ok=True)
        raise DownloadError(f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # http.client's protocol errors are not all OSError
        path.unlink(missing_ok=True)
        raise DownloadError(f"{type(exc).__name__}: {exc}") from None
    return path
