"""Generic archives: zip, tar, gzip, bzip2, xz and lzma. Every member goes back to the analyzers.

A pickle inside a zip inside a tar.gz is found because each container hands its members to
:meth:`~bastion.analyzer.Context.analyze_nested` as nested targets, which claim them by
content again. This analyzer is the fallback of the ``model`` capability for containers:
zip-based model formats (PyTorch, Keras, NumPy ``.npz``) are claimed first by their own
analyzers, registered before this one.

Hostile archives are the point, so everything is bounded (``[limits]`` of the policy): the
nesting depth, the members and the decompressed bytes of one file's whole archive tree
(shared down the tree), and each stream's compression ratio. A bomb stops the whole tree.
Nothing is ever extracted to disk: members are handed on as bytes when small
(:data:`IN_MEMORY`), else as bounded streams that re-read the archive. A member that cannot
be read (encrypted, unknown compression, corrupt) is a finding: it was not checked.

The rules live in :mod:`bastion.scan._archive_rules` (:data:`RULES`); zips are parsed by
:mod:`bastion.scan.ziputil`, tars by :mod:`bastion.scan.tarutil`.
"""

from __future__ import annotations

import io
import posixpath
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from bastion.analyzer import HEAD_SIZE, Context, Target
from bastion.findings import Finding, Location
from bastion.policy import Limits
from bastion.scan._archive_rules import (
    BOMB,
    CORRUPT,
    DEPTH,
    HIDDEN_DATA,
    KIND_RULE,
    LIMIT,
    LINK_ESCAPE,
    MEMBER_KINDS,
    RULES,
    SPECIAL,
    SUSPICIOUS_NAME,
    TRAVERSAL_RULE,
    UNSUPPORTED,
    ZIP_HEADER_MISMATCH,
)
from bastion.scan.boundedio import BoundedReader, Codec, DecodedStream, drain, lz4_available
from bastion.scan.tarutil import TarFormatError, TarMember, TarReader, looks_like_tar
from bastion.scan.ziputil import (
    CODECS,
    TAIL,
    TRAVERSAL,
    Discrepancy,
    Kind,
    ZipArchive,
    ZipFormatError,
    ZipMember,
    name_issues,
    open_member,
    read_zip,
)

#: Members up to this size are handed on as bytes; larger ones as re-reading streams.
IN_MEMORY = 64 << 20
#: Other views of a zip (from other EOCD records) whose members are scanned too.
MAX_VIEWS = 4

__all__ = ["IN_MEMORY", "RULES", "ArchiveAnalyzer", "detect", "inner_name"]

# -- detection ---------------------------------------------------------------------------------

_STREAMS: dict[str, Codec] = {"gzip": "gzip", "bzip2": "bzip2-stream", "xz": "xz",
                              "lzma": "lzma-alone", "zlib": "zlib", "lz4": "lz4-frame"}
_LZ4_FRAME = b"\x04\x22\x4d\x18"
_UNDECODABLE = {b"\x04\x22\x4d\x18": "LZ4 frame", b"\x02\x21\x4c\x18": "legacy LZ4",
                b"\x28\xb5\x2f\xfd": "Zstandard", b"7z\xbc\xaf\x27\x1c": "7-Zip",
                b"Rar!\x1a\x07": "RAR"}
_BZ2_BLOCKS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")  # pi, sqrt(pi)


def _lzma_alone(head: bytes) -> bool:
    """Legacy ``.lzma``: no magic, so props 0x5D, a 2^n or 3*2^n dictionary, a sane size."""
    if len(head) < 13 or head[0] != 0x5D:
        return False
    dict_size = int.from_bytes(head[1:5], "little")
    size = int.from_bytes(head[5:13], "little")
    power = dict_size & (dict_size - 1) == 0 or (dict_size // 3) & (dict_size // 3 - 1) == 0
    return dict_size >= 4096 and power and (size == 2**64 - 1 or size < 2**48)


def detect(head: bytes, *, whole: bool = False) -> str | None:
    """The container format from the first bytes, or None.

    ``whole`` says ``head`` is the entire file: a small zip with data prepended (a polyglot,
    a self-extractor stub) is then recognised by its end record too.
    """
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if whole and b"PK\x05\x06" in head[-TAIL:] and b"PK\x01\x02" in head:
        return "zip"
    if head.startswith(b"\x1f\x8b\x08"):
        return "gzip"
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[3:4] != b"0" \
            and head[4:10] in _BZ2_BLOCKS:
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(_LZ4_FRAME) and lz4_available():
        return "lz4"
    for magic, name in _UNDECODABLE.items():
        if head.startswith(magic):
            return name
    if looks_like_tar(head):
        return "tar"
    if _zlib_stream(head):
        return "zlib"
    return "lzma" if _lzma_alone(head) else None


def _zlib_stream(head: bytes) -> bool:
    """A bare zlib stream (joblib's ``compress=``): a valid header and a head that inflates."""
    if len(head) < 8 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or head[1] & 0x20:
        return False
    if (head[0] << 8 | head[1]) % 31:
        return False
    try:
        return bool(zlib.decompressobj().decompress(head, 64))
    except zlib.error:
        return False


_SUFFIXES = {".tgz": ".tar", ".taz": ".tar", ".tbz": ".tar", ".tbz2": ".tar", ".txz": ".tar",
             ".tlz": ".tar", ".gz": "", ".gzip": "", ".bz2": "", ".xz": "", ".lzma": "",
             ".z": "", ".zlib": "", ".lz4": ""}


def inner_name(name: str) -> str:
    """What a compressed file holds: its name without the suffix, or ``<decompressed>``."""
    lower = name.lower()
    for suffix, replacement in _SUFFIXES.items():
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)] + replacement
    return "<decompressed>"


# -- budget and dispatch -----------------------------------------------------------------------


@dataclass
class Budget:
    """What one file's archive tree may still cost; shared by every level of it."""

    bytes_left: int
    members_left: int
    stopped: bool = False


@dataclass(frozen=True)
class _Nested(Target):
    """A member target that carries its tree's budget down to archives nested in it."""

    budget: Budget | None = field(default=None, repr=False, compare=False)


Opener = Callable[[], IO[bytes]]


def _head_of(opener: Opener) -> bytes:
    with opener() as stream:
        return stream.read(HEAD_SIZE)


class ArchiveAnalyzer:
    """Zip, tar, gzip, bzip2, xz and lzma containers; LZ4, Zstandard, 7z, RAR detected only."""

    name = "archive"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return _detect(target) is not None

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        kind = _detect(target)
        if kind is None:
            return
        limits = ctx.policy.limits
        budget = Budget(limits.max_decompressed_size, limits.max_archive_members)
        if isinstance(target, _Nested) and target.budget is not None:
            budget = target.budget  # one budget for the whole tree of this file
        if budget.stopped:
            return
        if target.depth >= limits.max_archive_depth:
            yield DEPTH.finding(target.location, f"{kind} archive nested {target.depth} deep; "
                                f"limits.max-archive-depth is {limits.max_archive_depth}, so "
                                "its members were not scanned")
            return
        if kind in _UNDECODABLE.values():
            yield UNSUPPORTED.finding(target.location, f"{kind} data: Bastion cannot decode "
                                      "it, so its content was not analysed")
            return
        if kind == "zip":
            found = self._zip(target, ctx, budget)
        elif kind == "tar":
            found = self._tar(target, ctx, budget)
        else:
            found = self._stream(target, ctx, budget, _STREAMS[kind])
        yield from _capped(found, target.location)

    # -- hooks for formats built on these containers (PyTorch zip and tar) -------------------

    def _wanted(self, name: str) -> bool:
        """Whether a member is read at all (PyTorch never reads its tensor members as code)."""
        return True

    def _analyze_member(self, child: Target, ctx: Context) -> Iterator[Finding]:
        """Analyse one member; by default it is claimed by content like any file."""
        yield from ctx.analyze_nested(child)

    # -- shared ------------------------------------------------------------------------------

    def _dispatch(self, parent: Target, name: str, size: int, head: bytes, opener: Opener,
                  ctx: Context, budget: Budget) -> Iterator[Finding]:
        child = _Nested(parent.location.child(name), size, head, opener, parent.depth + 1,
                        budget)
        yield from self._analyze_member(child, ctx)

    def _dispatch_bytes(self, parent: Target, name: str, data: bytes, ctx: Context,
                        budget: Budget) -> Iterator[Finding]:
        yield from self._dispatch(parent, name, len(data), data[:HEAD_SIZE],
                                  lambda: io.BytesIO(data), ctx, budget)

    def _verdict(self, loc: Location, reader: BoundedReader, budget: Budget,
                 limits: Limits) -> Iterator[Finding]:
        """Findings about one bounded read; a cap stops the whole archive tree."""
        d = reader.decoded
        if d.limit_hit == "ratio":
            budget.stopped = True
            yield BOMB.finding(loc, f"decompresses at more than {limits.max_compression_ratio}:1"
                               "; stopped reading the archive",
                               properties={"limit": "max-compression-ratio"})
        elif d.limit_hit == "size":
            budget.stopped = True
            yield LIMIT.finding(loc, "the archive tree decompresses to more than "
                                f"limits.max-decompressed-size ({limits.max_decompressed_size}"
                                " bytes); the rest was not scanned", references=("CWE-409",))
        if d.error:
            yield CORRUPT.finding(loc, f"cannot be decompressed to its end: {d.error}")
        if d.overrun:
            yield ZIP_HEADER_MISMATCH.finding(loc, "holds more data than its declared size; "
                                              "readers that trust the data see more")
        if d.crc_ok is False:
            yield ZIP_HEADER_MISMATCH.finding(loc, "CRC-32 does not match: CPython's zipfile "
                                              "refuses the member, PyTorch reads it")
        if d.trailing:
            yield HIDDEN_DATA.finding(loc, "data after the end of the compressed stream")

    # -- zip ---------------------------------------------------------------------------------

    def _zip(self, target: Target, ctx: Context, budget: Budget) -> Iterator[Finding]:
        with target.open() as stream:
            try:
                archive = read_zip(stream, size=target.size, max_members=budget.members_left)
            except ZipFormatError as exc:
                yield CORRUPT.finding(target.location.at(offset=exc.offset),
                                      f"zip archive cannot be read: {exc}")
                return
            yield from (_discrepancy(d, target.location) for d in archive.discrepancies)
            views = [archive, *self._other_views(stream, target, archive, budget)]
            for view in views[1:]:
                yield from (_discrepancy(d, target.location) for d in view.discrepancies
                            if d.kind in MEMBER_KINDS)
            overlap = any(d.kind is Kind.OVERLAP for d in archive.discrepancies)
            seen: set[tuple[int | None, int, int]] = set()
            for view in views:
                for member in sorted(view.members, key=lambda m: m.header_offset):
                    key = (member.data_offset, member.compressed_size, member.method)
                    if key in seen or not _readable(member, view) or not self._wanted(
                            member.name):
                        continue
                    seen.add(key)
                    if budget.stopped:
                        return
                    if budget.members_left <= 0:
                        yield _member_limit(target, ctx.policy.limits)
                        return
                    budget.members_left -= 1
                    yield from self._zip_member(target, stream, member, ctx, budget, overlap)

    def _other_views(self, stream: IO[bytes], target: Target, archive: ZipArchive,
                     budget: Budget) -> Iterator[ZipArchive]:
        """The archives seen by readers that take another EOCD record than the last."""
        for offset in archive.other_eocds[:MAX_VIEWS]:
            try:
                view = read_zip(stream, size=target.size, max_members=budget.members_left,
                                eocd_offset=offset)
            except ZipFormatError:
                continue
            yield view

    def _zip_member(self, target: Target, stream: IO[bytes], m: ZipMember, ctx: Context,
                    budget: Budget, overlap: bool) -> Iterator[Finding]:
        limits, loc = ctx.policy.limits, target.location.child(m.name)

        def opener(cap: int) -> Callable[[], IO[bytes]]:
            return lambda: open_member(target.open(), m, limits=limits, cap=cap,
                                       close_source=True)

        if CODECS[m.method] == "stored" and m.uncompressed_size > IN_MEMORY:
            size = min(m.compressed_size, m.uncompressed_size)
            if overlap:  # overlapping stored members re-read the same bytes: count them
                if size > budget.bytes_left:
                    budget.stopped = True
                    yield LIMIT.finding(loc, "overlapping members exceed "
                                        "limits.max-decompressed-size", references=("CWE-409",))
                    return
                budget.bytes_left -= size
            yield from self._dispatch(target, m.name, size, _head_of(opener(size)), opener(size),
                                      ctx, budget)
            return
        if m.uncompressed_size <= IN_MEMORY:
            with open_member(stream, m, limits=limits, cap=min(IN_MEMORY, budget.bytes_left)
                             ) as reader:
                data = reader.read()
                problems = list(self._verdict(loc, reader, budget, limits))
            budget.bytes_left -= len(data)
            yield from problems
            if not budget.stopped:
                yield from self._dispatch_bytes(target, m.name, data, ctx, budget)
            return
        with open_member(stream, m, limits=limits, cap=budget.bytes_left) as reader:
            head, total = drain(reader, HEAD_SIZE)
            problems = list(self._verdict(loc, reader, budget, limits))
        budget.bytes_left -= total
        yield from problems
        if not budget.stopped:
            yield from self._dispatch(target, m.name, total, head, opener(total), ctx, budget)

    # -- tar ---------------------------------------------------------------------------------

    def _tar(self, target: Target, ctx: Context, budget: Budget) -> Iterator[Finding]:
        with target.open() as stream:
            reader = TarReader(stream, target.size)
            try:
                for member in reader.members():
                    if budget.stopped:
                        return
                    if budget.members_left <= 0:
                        yield _member_limit(target, ctx.policy.limits)
                        return
                    budget.members_left -= 1
                    yield from self._tar_member(target, stream, member, ctx, budget)
            except TarFormatError as exc:
                yield CORRUPT.finding(target.location.at(offset=exc.offset),
                                      f"tar archive cannot be read past offset {exc.offset}: "
                                      f"{exc}")
                return
            if reader.trailing_offset is not None:
                yield HIDDEN_DATA.finding(target.location.at(offset=reader.trailing_offset),
                                          "data after the tar end-of-archive marker")

    def _tar_member(self, target: Target, stream: IO[bytes], m: TarMember, ctx: Context,
                    budget: Budget) -> Iterator[Finding]:
        loc = target.location.child(m.name).at(offset=m.offset)
        yield from _name_findings(m.name, loc)
        if m.kind in ("symlink", "hardlink"):
            if _link_escapes(m):
                yield LINK_ESCAPE.finding(loc, f"{m.kind} {m.name!r} points outside the "
                                          f"archive: {m.linkname!r}",
                                          evidence=f"{m.name} -> {m.linkname}")
            return
        if m.kind in ("character device", "block device", "fifo"):
            yield SPECIAL.finding(loc, f"member {m.name!r} is a {m.kind}")
            return
        if m.sparse or m.type == "M":
            yield UNSUPPORTED.finding(loc, f"{m.kind} tar member: its content was not analysed")
            return
        if not m.is_file or not self._wanted(m.name):
            return
        if m.data_offset + m.size > target.size:
            yield CORRUPT.finding(loc, f"member data runs past the end of the archive "
                                  f"({m.size} bytes declared)")
            return
        if m.size <= IN_MEMORY:
            stream.seek(m.data_offset)
            yield from self._dispatch_bytes(target, m.name, stream.read(m.size), ctx, budget)
            return

        def window() -> IO[bytes]:
            raw = DecodedStream(target.open(), "stored", start=m.data_offset, length=m.size,
                                max_output=m.size, close_source=True)
            return BoundedReader(raw)

        yield from self._dispatch(target, m.name, m.size, _head_of(window), window, ctx, budget)

    # -- gzip, bzip2, xz, lzma ---------------------------------------------------------------

    def _stream(self, target: Target, ctx: Context, budget: Budget, codec: Codec
                ) -> Iterator[Finding]:
        limits, name = ctx.policy.limits, inner_name(target.name)

        def opener(cap: int) -> Callable[[], IO[bytes]]:
            return lambda: BoundedReader(DecodedStream(
                target.open(), codec, length=target.size, max_output=cap,
                max_ratio=limits.max_compression_ratio, close_source=True))

        with opener(budget.bytes_left)() as reader:
            assert isinstance(reader, BoundedReader)
            kept, total = drain(reader, IN_MEMORY)
            problems = list(self._verdict(target.location.child(name), reader, budget, limits))
        budget.bytes_left -= total
        yield from problems
        if budget.stopped:
            return
        if total <= IN_MEMORY:
            yield from self._dispatch_bytes(target, name, kept, ctx, budget)
        else:
            yield from self._dispatch(target, name, total, kept[:HEAD_SIZE], opener(total), ctx,
                                      budget)


def _detect(target: Target) -> str | None:
    return detect(target.head, whole=target.size <= len(target.head))


def _capped(findings: Iterator[Finding], location: Location, limit: int = 25
            ) -> Iterator[Finding]:
    """At most ``limit`` findings per rule about this archive's own members, then a count.

    Findings from deeper down (other analyzers, nested archives) pass untouched: a hundred
    malicious pickles in one archive are a hundred findings.
    """
    own = {rule.id: rule for rule in RULES}
    depth = len(location.members) + 1
    seen: Counter[str] = Counter()
    for finding in findings:
        if finding.rule_id in own and len(finding.location.members) <= depth:
            seen[finding.rule_id] += 1
            if seen[finding.rule_id] > limit:
                continue
        yield finding
    for rule_id, count in seen.items():
        if count > limit:
            yield own[rule_id].finding(location, f"{count - limit} more findings of this kind "
                                       "in this archive were left out",
                                       properties={"omitted": count - limit})


def _readable(m: ZipMember, view: ZipArchive) -> bool:
    """Members with data to hand on; the others were reported as discrepancies."""
    return (not m.is_dir and not m.encrypted and m.method in CODECS and m.data_end is not None
            and m.data_end <= view.size)


def _member_limit(target: Target, limits: Limits) -> Finding:
    return LIMIT.finding(target.location, f"more than limits.max-archive-members "
                         f"({limits.max_archive_members}) members in this file's archive tree; "
                         "the rest were not scanned")


def _discrepancy(d: Discrepancy, location: Location) -> Finding:
    loc = location.child(d.member) if d.member is not None else location
    loc = loc.at(offset=d.offset)
    if d.kind is Kind.UNSAFE_NAME:
        rule = TRAVERSAL_RULE if TRAVERSAL.intersection(d.detail) else SUSPICIOUS_NAME
        return rule.finding(loc, d.message, evidence=d.member)
    return KIND_RULE[d.kind].finding(loc, d.message, properties={"zip": d.kind.value})


def _name_findings(name: str, loc: Location) -> Iterator[Finding]:
    issues = name_issues(name)
    if issues:
        rule = TRAVERSAL_RULE if TRAVERSAL.intersection(issues) else SUSPICIOUS_NAME
        yield rule.finding(loc, f"member name {name!r}: {', '.join(issues)}", evidence=name)


def _link_escapes(m: TarMember) -> bool:
    """Whether a link resolves outside the archive root (symlinks: from the member's folder)."""
    link = m.linkname.replace("\\", "/")
    if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        return True
    base = posixpath.dirname(m.name.replace("\\", "/")) if m.kind == "symlink" else ""
    resolved = posixpath.normpath(posixpath.join("/root", base.lstrip("/"), link))
    return not (resolved == "/root" or resolved.startswith("/root/"))
