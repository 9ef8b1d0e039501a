"""Reading a package's files without extracting, importing or running anything.

Three shapes of package:

* an **sdist**: a ``.tar.gz`` (or ``.tar.bz2``/``.tar.xz``/plain tar) or ``.zip`` whose
  members sit under one ``name-version/`` folder holding ``PKG-INFO``, ``setup.py`` or
  ``pyproject.toml``;
* a **wheel** (or an egg): a zip with a top-level ``*.dist-info/WHEEL`` (``EGG-INFO/PKG-INFO``);
* an **installed** distribution: the files its ``*.dist-info/RECORD`` lists, read from the
  site-packages folder around it (never outside it).

Zips are read through :mod:`bastion.scan.ziputil` and tars through
:mod:`bastion.scan.tarutil` over :mod:`bastion.scan.boundedio` streams, the readers the
archive analyzer hardened against bombs and traversal; a compressed tar is read in one
forward pass. Every member is recognised by its first bytes (native binaries); Python
sources and metadata are kept whole up to :data:`MAX_FILE` each and :data:`MAX_KEPT` in all.
Counts, bytes and time are bounded; what a bound cut off is recorded as a problem.
"""

from __future__ import annotations

import lzma
import os
import re
import stat
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bastion.analyzer import Target
from bastion.policy import Limits
from bastion.scan.archive import detect
from bastion.scan.boundedio import BoundedReader, Codec, DecodedStream
from bastion.scan.tarutil import TarFormatError, TarReader, looks_like_tar
from bastion.scan.ziputil import ZipFormatError, read_member, read_zip
from bastion.supply.heuristics.binaries import HEAD, native_kind
from bastion.supply.heuristics.interface import MAX_SOURCE

#: Largest file kept whole for analysis (bigger ones are reported, not parsed).
MAX_FILE = MAX_SOURCE
#: Bytes of sources and metadata kept in memory for one package.
MAX_KEPT = 256 << 20
#: Members of one package looked at.
MAX_MEMBERS = 50_000
#: Decompressed bytes of one compressed tar walked (also capped by the policy).
MAX_UNPACKED = 4 << 30
#: How far into a tar an sdist's ``PKG-INFO``/``setup.py``/``pyproject.toml`` must have shown
#: (tools write them first or among the first files); past it, a tar is taken for data.
MAX_UNMARKED = 256 << 20
#: Wall-clock seconds spent reading and analysing one package (a 2 MiB source takes ~2 s).
MAX_SECONDS = 60.0
#: Files of one installed distribution read.
MAX_INSTALLED_FILES = 2_000
#: Deepest installed file read (``pkg/sub/module.py`` is depth 2).
MAX_INSTALLED_DEPTH = 2
#: Largest RECORD read.
MAX_RECORD = 16 << 20
_STREAM_CODECS: dict[str, Codec] = {"gzip": "gzip", "bzip2": "bzip2-stream", "xz": "xz"}
#: An sdist's top folder: ``name-version`` (PEP 625 and the older conventions).
SDIST_ROOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*-[0-9][A-Za-z0-9._+!-]*")
_METADATA_FILES = frozenset({"PKG-INFO", "METADATA", "WHEEL", "entry_points.txt", "setup.cfg",
                             "pyproject.toml"})


@dataclass(frozen=True)
class Member:
    """One file of a package: its path inside it, what it is, and its text when kept."""

    name: str
    size: int
    native: str | None = None
    data: bytes | None = None
    #: Why a wanted file's content is missing (too large, unreadable).
    note: str | None = None


@dataclass
class Package:
    kind: str  # "sdist", "wheel", "egg" or "installed"
    root: str  # the sdist's top folder with its slash, else ""
    members: list[Member] = field(default_factory=list)
    #: (member or None, what could not be read or was cut off)
    problems: list[tuple[str | None, str]] = field(default_factory=list)
    #: When reading and analysing this package must stop (``time.monotonic()``).
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)

    def at_root(self, name: str) -> Member | None:
        path = self.root + name
        return next((m for m in self.members if m.name == path), None)


def wanted(name: str) -> bool:
    """Files analysed whole: Python sources, ``.pth`` files, metadata."""
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith((".py", ".pyw", ".pth")) or base in _METADATA_FILES


def classify(names: list[str]) -> tuple[str, str] | None:
    """``(kind, root)`` of a package from its member names, or None when it is not one."""
    if any(n.count("/") == 1 and n.endswith(".dist-info/WHEEL") for n in names):
        return "wheel", ""
    if "EGG-INFO/PKG-INFO" in names:
        return "egg", ""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        root = f"{next(iter(tops))}/"
        if any(f"{root}{f}" in names for f in ("PKG-INFO", "setup.py", "pyproject.toml")):
            return "sdist", root
    if any(f in names for f in ("PKG-INFO", "setup.py", "pyproject.toml")):
        return "sdist", ""
    return None


class Budget:
    def __init__(self) -> None:
        self.kept = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def keep(self, size: int) -> bool:
        if self.kept + size > MAX_KEPT:
            return False
        self.kept += size
        return True


def _member(name: str, size: int, data: bytes, budget: Budget,
            problem: str | None = None) -> Member:
    native = native_kind(data[:HEAD])
    if not wanted(name):
        return Member(name, size, native)
    if problem is not None:
        return Member(name, size, native, None, problem)
    if len(data) > MAX_FILE or size > MAX_FILE:
        return Member(name, size, native, None, f"larger than {MAX_FILE} bytes; not analysed")
    if not budget.keep(len(data)):
        return Member(name, size, native, None, "over the package's analysis budget")
    return Member(name, size, native, data)


# -- archives ----------------------------------------------------------------------------------


def archive_kind(target: Target) -> str | None:
    """The container format of a target, from its head (``zip``, ``gzip``, ``tar``...)."""
    return detect(target.head, whole=target.size <= len(target.head))


def read_archive(target: Target, limits: Limits) -> Package | None:
    """The package inside an archive, or None when the archive is not a package."""
    kind = archive_kind(target)
    budget = Budget()
    if kind == "zip":
        return _read_zip(target, limits, budget)
    if kind == "tar" or kind in _STREAM_CODECS:
        return _read_tar(target, limits, budget, _STREAM_CODECS.get(kind or ""))
    return None


def _read_zip(target: Target, limits: Limits, budget: Budget) -> Package | None:
    with target.open() as stream:
        try:
            archive = read_zip(stream, size=target.size,
                               max_members=min(MAX_MEMBERS, limits.max_archive_members))
        except ZipFormatError:
            return None  # not readable as a zip: the archive analyzer reports that
        files = [m for m in archive.members if not m.is_dir]
        found = classify([m.name for m in files])
        if found is None:
            return None
        package = Package(*found, deadline=budget.deadline)
        if len(archive.members) >= min(MAX_MEMBERS, limits.max_archive_members):
            package.problems.append((None, "too many members; the rest were not analysed"))
        for m in files:
            if budget.expired():
                package.problems.append((None, f"stopped after {MAX_SECONDS:.0f} s"))
                break
            cap = MAX_FILE + 1 if wanted(m.name) else HEAD
            try:
                got = read_member(stream, m, cap, limits=limits)
            except ZipFormatError as exc:
                package.members.append(_member(m.name, m.uncompressed_size, b"", budget,
                                               f"cannot be read: {exc}"))
                continue
            problem = None
            if got.limit_hit == "ratio" or got.error:
                problem = f"cannot be read: {got.error or 'compression ratio over the limit'}"
            package.members.append(_member(m.name, m.uncompressed_size, got.data, budget,
                                           problem))
        return package


def _tar_stream(target: Target, limits: Limits, codec: Codec | None, cap: int) -> IO[bytes]:
    if codec is None:
        return target.open()
    return BoundedReader(DecodedStream(target.open(), codec, length=target.size,
                                       max_output=cap, max_ratio=limits.max_compression_ratio,
                                       close_source=True))


def _read_tar(target: Target, limits: Limits, budget: Budget, codec: Codec | None
              ) -> Package | None:
    cap = min(MAX_UNPACKED, limits.max_decompressed_size)
    members: list[Member] = []
    problems: list[tuple[str | None, str]] = []
    marked = False
    with _tar_stream(target, limits, codec, cap) as stream:
        reader = TarReader(stream, target.size if codec is None else cap)
        try:
            for count, m in enumerate(reader.members()):
                if count == 0 and not SDIST_ROOT.fullmatch(m.name.split("/", 1)[0]):
                    return None  # not laid out as an sdist: a tar of something else
                marked = marked or (m.name.count("/") <= 1 and m.name.rsplit("/", 1)[-1] in (
                    "PKG-INFO", "setup.py", "pyproject.toml"))
                if not marked and m.data_offset > MAX_UNMARKED:
                    return None  # so far in and still no PKG-INFO or setup.py: not an sdist
                if count >= min(MAX_MEMBERS, limits.max_archive_members):
                    problems.append((None, "too many members; the rest were not analysed"))
                    break
                if budget.expired():
                    problems.append((None, f"stopped after {MAX_SECONDS:.0f} s"))
                    break
                if not m.is_file:
                    continue
                stream.seek(m.data_offset)
                data = stream.read(min(m.size, MAX_FILE + 1 if wanted(m.name) else HEAD))
                members.append(_member(m.name, m.size, data, budget))
        except TarFormatError as exc:
            problems.append((None, f"tar archive cannot be read past offset {exc.offset}: "
                                   f"{exc}"))
        if isinstance(stream, BoundedReader):
            decoded = stream.decoded
            if decoded.limit_hit or decoded.error:
                why = decoded.error or f"{decoded.limit_hit} limit reached"
                problems.append((None, f"decompression stopped: {why}"))
    found = classify([m.name for m in members])
    if found is None:
        return None
    return Package(*found, members=members, problems=problems, deadline=budget.deadline)


def peek_sdist(target: Target) -> bool:
    """Cheaply, from the head: a (compressed) tar whose first member is ``name-version/``."""
    kind = archive_kind(target)
    head = target.head
    if kind in ("gzip", "xz"):
        head = _unpack_head(head, kind)
    elif kind != "tar":
        return kind == "bzip2" and target.depth == 0  # bzip2 yields nothing from a head
    if not looks_like_tar(head):
        return False
    name = head[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if head[257:263] == b"ustar\x00" and head[345:500].strip(b"\0"):
        name = head[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") + "/" + name
    return bool(SDIST_ROOT.fullmatch(name.split("/", 1)[0])) or name.startswith("././@")


def _unpack_head(head: bytes, kind: str) -> bytes:
    try:
        if kind == "gzip":
            return zlib.decompressobj(31).decompress(head, 1024)
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=256 << 20).decompress(head, 1024)
    except (zlib.error, lzma.LZMAError, EOFError):
        return b""


# -- installed distributions -------------------------------------------------------------------


def read_installed(record: Path) -> Package:
    """The files a ``*.dist-info/RECORD`` lists, read from the site-packages around it.

    Paths outside the site-packages folder (``../../bin/tool``, absolute paths, links that
    lead out) are not read; ``.pth`` files are left to their own analysis (every one of
    them in the folder is claimed by name). Only the modules an import reaches first are
    read: top-level modules, and those of top-level packages and their direct subpackages
    (:data:`MAX_INSTALLED_DEPTH`), top-level first. A whole environment is scanned in
    minutes this way, not tens of minutes; an installed package's deeper modules are
    covered when its wheel or sdist is scanned.
    """
    dist = record.parent
    site = dist.parent
    budget = Budget()
    package = Package("installed", "", deadline=budget.deadline)
    try:
        base = site.resolve(strict=True)
    except OSError as exc:
        package.problems.append((None, f"cannot resolve {site}: {exc}"))
        return package
    text, truncated = _read_limited(record, MAX_RECORD)
    if text is None:
        package.problems.append((record.name, "RECORD cannot be read"))
        return package
    if truncated:
        package.problems.append((record.name, f"RECORD larger than {MAX_RECORD} bytes; cut"))
    paths = dict.fromkeys(_record_paths(text.decode("utf-8", "replace")))
    for meta in ("METADATA", "entry_points.txt"):
        paths.setdefault(f"{dist.name}/{meta}", None)
    chosen = sorted((p for p in paths if wanted(p) and not p.endswith(".pth")
                     and p.count("/") <= MAX_INSTALLED_DEPTH),
                    key=lambda p: (p.count("/"), not p.endswith("__init__.py"), p))
    if len(chosen) > MAX_INSTALLED_FILES:
        package.problems.append((None, f"{len(chosen) - MAX_INSTALLED_FILES} more files were "
                                       "not analysed (file count limit)"))
    for rel in chosen[:MAX_INSTALLED_FILES]:
        if budget.expired():
            package.problems.append((None, f"stopped after {MAX_SECONDS:.0f} s"))
            break
        try:
            resolved = (site / rel).resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # listed but missing (or a link loop): nothing to read
        if not resolved.is_relative_to(base):
            package.problems.append((rel, "leads outside the site-packages folder; not read"))
            continue
        data, cut = _read_limited(resolved, MAX_FILE)
        if data is None:
            package.problems.append((rel, "cannot be read"))
            continue
        package.members.append(_member(rel, len(data) + (1 if cut else 0), data, budget))
    return package


def _record_paths(text: str) -> Iterator[str]:
    for line in text.splitlines()[:200_000]:
        path = line.split(",", 1)[0].strip().strip('"').replace("\\", "/")
        parts = path.split("/")
        if path and not path.startswith("/") and ".." not in parts and ":" not in parts[0]:
            yield path


def _read_limited(path: Path, limit: int) -> tuple[bytes | None, bool]:
    """At most ``limit`` bytes of a regular file (never a FIFO or device; no blocking)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None, False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, False
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError:
        return None, False
    finally:
        os.close(fd)
    return data[:limit], len(data) > limit
