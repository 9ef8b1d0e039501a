"""A bounded zip reader that reports every place where zip readers disagree.

Zip-based model formats (PyTorch checkpoints, Keras ``.keras``, NumPy ``.npz``) and plain
zip archives are read here, with ``struct``, never with :mod:`zipfile`: the point is to see
what *each* reader would see, and to say so when they differ. A file that one reader loads
and another rejects, or that two readers read as different members, is how a payload gets
past a scanner (CWE-436).

Whose view we follow. Like CPython's :mod:`zipfile` and PyTorch's reader (miniz, behind
``torch.load``), we take the *last* end-of-central-directory (EOCD) record in the final
64 KiB + 22 bytes (trying earlier ones only if it does not parse), walk the central
directory by its declared byte size, and find each member's data at its central-directory
local-header offset plus the *local* header's own name and extra lengths. Method, sizes and
CRC come from the central directory. Like PyTorch, we are lenient where it is: PyTorch turned
CRC checks off on read (pytorch#32244) and does not compare local and central names, and
scanners (modelscan, fickling) open torch zips with a "relaxed" zipfile that skips CPython's
name, flag and CRC checks so they see what torch loads. So we refuse nothing that torch
would read; instead each oddity becomes a :class:`Discrepancy` for the caller to report.
Like CPython, offsets are shifted by any data prepended to the archive.

Every count, size and scan is bounded; a broken archive raises :class:`ZipFormatError`.
Member data is read through :mod:`bastion.scan.boundedio` (stored, deflate, bzip2, lzma).
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass
from typing import IO

from bastion.policy import Limits
from bastion.scan._archiveinfo import (
    CENTRAL,
    CENTRAL_SIG,
    CODECS,
    EOCD,
    EOCD_SIG,
    FLAG_DESCRIPTOR,
    FLAG_ENCRYPTED,
    FLAG_STRONG,
    LOCAL,
    LOCAL_SIG,
    TAIL,
    TRAVERSAL,
    ZIP64_EOCD,
    ZIP64_EOCD_SIG,
    ZIP64_LOCATOR,
    ZIP64_LOCATOR_SIG,
    Discrepancy,
    Kind,
    NameIssue,
    Notes,
    ZipArchive,
    ZipFormatError,
    ZipMember,
    decode_name,
    name_issues,
)
from bastion.scan.boundedio import BoundedReader, DecodedStream

#: Bytes outside member data that are searched for hidden headers, per archive.
SCAN_BUDGET = 16 << 20
#: EOCD candidates tried before giving up; a comment can be stuffed with signatures.
MAX_EOCD_TRIES = 8

__all__ = [
    "CODECS", "EOCD", "TAIL", "TRAVERSAL", "Discrepancy", "Kind", "MemberData", "NameIssue",
    "ZipArchive", "ZipFormatError", "ZipMember", "eocd_candidates", "name_issues",
    "open_member", "read_member", "read_zip",
]

# -- reading the structure ---------------------------------------------------------------------


def _read_at(stream: IO[bytes], offset: int, n: int) -> bytes:
    stream.seek(offset)
    return stream.read(n)


def _size_of(stream: IO[bytes]) -> int:
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end


def eocd_candidates(stream: IO[bytes], size: int) -> list[int]:
    """Offsets of EOCD signatures in the tail, last first (with room for the 22 bytes)."""
    start = max(0, size - TAIL)
    tail = _read_at(stream, start, size - start)
    found = [m.start() + start for m in re.finditer(re.escape(EOCD_SIG), tail)]
    return [pos for pos in reversed(found) if pos + EOCD.size <= size]


@dataclass
class _Layout:
    eocd: int
    cd_start: int
    cd_size: int
    cd_end: int  # where the records after the central directory start
    entries: int
    entries_here: int
    prefix: int
    zip64: bool
    comment: bytes
    spanned: bool


def _layout(stream: IO[bytes], size: int, pos: int) -> _Layout:
    sig, disk, cd_disk, here, total, cd_size, cd_offset, clen = EOCD.unpack(
        _read_at(stream, pos, EOCD.size))
    if sig != EOCD_SIG:
        raise ZipFormatError("no end of central directory record here", pos)
    comment = _read_at(stream, pos + EOCD.size, clen)
    cd_end, zip64 = pos, False
    loc_pos = pos - ZIP64_LOCATOR.size
    if loc_pos >= 0 and _read_at(stream, loc_pos, 4) == ZIP64_LOCATOR_SIG:
        rec_pos = loc_pos - ZIP64_EOCD.size  # where CPython looks, whatever the locator says
        raw = _read_at(stream, rec_pos, ZIP64_EOCD.size) if rec_pos >= 0 else b""
        if len(raw) == ZIP64_EOCD.size and raw[:4] == ZIP64_EOCD_SIG:
            (_, _, _, _, disk, cd_disk, here, total, cd_size, cd_offset) = ZIP64_EOCD.unpack(raw)
            cd_end, zip64 = rec_pos, True
        elif 0xFFFFFFFF in (cd_size, cd_offset) or 0xFFFF in (here, total):
            raise ZipFormatError("ZIP64 end of central directory record missing", loc_pos)
    prefix = cd_end - cd_size - cd_offset
    if prefix < 0:
        raise ZipFormatError("central directory offset and size point past the end record", pos)
    return _Layout(pos, cd_offset + prefix, cd_size, cd_end, total, here, prefix, zip64,
                   comment, spanned=bool(disk or cd_disk))


def _zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Apply a ZIP64 extended-information field (id 1) to the 0xFFFFFFFF values."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4: pos + 4 + length]
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        pos += 4 + length
    return usize, csize, offset


def _central(stream: IO[bytes], lay: _Layout, max_members: int, notes: Notes) -> list[ZipMember]:
    members: list[ZipMember] = []
    stream.seek(lay.cd_start)
    consumed = 0
    while consumed < lay.cd_size:
        if len(members) >= max_members:
            notes.add(Kind.MEMBER_LIMIT, f"more than {max_members} members; the rest were not "
                      "read", lay.cd_start + consumed)
            break
        raw = stream.read(CENTRAL.size)
        if len(raw) < CENTRAL.size or raw[:4] != CENTRAL_SIG:
            raise ZipFormatError("bad central directory entry", lay.cd_start + consumed)
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, _, _, _,
         offset) = CENTRAL.unpack(raw)
        var = stream.read(nlen + elen + clen)
        if len(var) < nlen + elen + clen:
            raise ZipFormatError("central directory truncated", lay.cd_start + consumed)
        usize, csize, offset = _zip64_extra(var[nlen: nlen + elen], usize, csize, offset)
        raw_name = var[:nlen]
        members.append(ZipMember(len(members), decode_name(raw_name, flags), raw_name,
                                 offset + lay.prefix, None, csize, usize, method, flags, crc))
        consumed += CENTRAL.size + nlen + elen + clen
    return members


def _local(stream: IO[bytes], member: ZipMember, size: int, notes: Notes) -> ZipMember:
    """Check a member's local header against its central entry; locate its data."""
    off, name = member.header_offset, member.name
    raw = _read_at(stream, off, LOCAL.size)
    if len(raw) < LOCAL.size or raw[:4] != LOCAL_SIG:
        notes.add(Kind.BAD_LOCAL_HEADER, f"no local file header where the central directory "
                  f"puts member {name!r} (offset {off})", off, name)
        return member
    (_, _, flags, method, _, _, crc, csize, usize, nlen, elen) = LOCAL.unpack(raw)
    local_name = stream.read(nlen)
    if local_name != member.raw_name:
        notes.add(Kind.NAME_MISMATCH, f"central directory name {name!r} but local header name "
                  f"{decode_name(local_name, flags)!r}: CPython's zipfile refuses this member, "
                  "PyTorch and extractors that read local headers do not", off, name)
    diffs = []
    if method != member.method:
        diffs.append(f"method {method} (central {member.method})")
    if (flags ^ member.flags) & (FLAG_ENCRYPTED | FLAG_STRONG):
        diffs.append("encryption flag")
    if not flags & FLAG_DESCRIPTOR and 0xFFFFFFFF not in (csize, usize):
        if (csize, usize) != (member.compressed_size, member.uncompressed_size):
            diffs.append(f"sizes {csize}/{usize} (central {member.compressed_size}/"
                         f"{member.uncompressed_size})")
        if crc != member.crc:
            diffs.append("CRC")
    if member.method == 0 and member.compressed_size != member.uncompressed_size:
        diffs.append(f"stored member with compressed size {member.compressed_size} but size "
                     f"{member.uncompressed_size}")
    if diffs:
        notes.add(Kind.HEADER_MISMATCH, f"member {name!r}: local header disagrees with the "
                  f"central directory: {', '.join(diffs)}", off, name)
    data_offset = off + LOCAL.size + nlen + elen
    if data_offset + member.compressed_size > size:
        notes.add(Kind.TRUNCATED, f"member {name!r}: data runs past the end of the file",
                  data_offset, name)
    return ZipMember(member.index, name, member.raw_name, off, data_offset,
                     member.compressed_size, member.uncompressed_size, member.method,
                     member.flags, member.crc)


def _check_members(members: list[ZipMember], notes: Notes) -> None:
    seen: set[str] = set()
    for m in members:
        if issues := name_issues(m.name):
            notes.add(Kind.UNSAFE_NAME, f"member name {m.name!r}: "
                      f"{', '.join(issues)}", m.header_offset, m.name, tuple(issues))
        key = m.name.split("\x00", 1)[0]  # CPython cuts names at the first NUL
        if key in seen:
            notes.add(Kind.DUPLICATE_NAME, f"member name {key!r} appears more than once: "
                      "CPython's zipfile reads the last entry, extractors and other readers "
                      "the first", m.header_offset, m.name)
        seen.add(key)
        if m.encrypted:
            notes.add(Kind.ENCRYPTED, f"member {m.name!r} is encrypted", m.header_offset, m.name)
        elif m.method not in CODECS:
            notes.add(Kind.UNKNOWN_METHOD, f"member {m.name!r} uses compression method "
                      f"{m.method}, which Bastion cannot decode", m.header_offset, m.name)


def _descriptor(stream: IO[bytes], m: ZipMember, end: int) -> int:
    """Length of the data descriptor after a member's data (flag bit 3), else 0."""
    if not m.flags & FLAG_DESCRIPTOR:
        return 0
    wide = 8 if max(m.compressed_size, m.uncompressed_size) >= 0xFFFFFFFF else 0
    return (16 if _read_at(stream, end, 4) == b"PK\x07\x08" else 12) + wide


Span = tuple[int, int]


def _regions(stream: IO[bytes], members: list[ZipMember], lay: _Layout, size: int,
             notes: Notes) -> tuple[list[tuple[int, int, Kind]], list[Span]]:
    """Bytes no member covers (and overlapping members); also the member spans, sorted."""
    spans: list[tuple[int, int, ZipMember]] = []
    for m in members:
        if m.data_end is not None:
            spans.append((m.header_offset, m.data_end + _descriptor(stream, m, m.data_end), m))
    spans.sort(key=lambda s: (s[0], s[1]))
    regions: list[tuple[int, int, Kind]] = []
    cursor = 0
    for start, end, m in spans:
        if start < cursor:
            notes.add(Kind.OVERLAP, f"member {m.name!r} overlaps the data of another member "
                      f"(offset {start}): a zip bomb by overlap, or two names for one payload",
                      start, m.name)
        elif start > cursor:
            regions.append((cursor, start, Kind.PREPENDED_DATA if cursor == 0
                            else Kind.EMBEDDED_DATA))
        cursor = max(cursor, end)
    if lay.cd_start < cursor:
        notes.add(Kind.OVERLAP, "the central directory overlaps member data", lay.cd_start)
    elif lay.cd_start > cursor:
        regions.append((cursor, lay.cd_start, Kind.PREPENDED_DATA if cursor == 0
                        else Kind.EMBEDDED_DATA))
    if lay.cd_end > lay.cd_start + lay.cd_size:
        regions.append((lay.cd_start + lay.cd_size, lay.cd_end, Kind.EMBEDDED_DATA))
    tail = lay.eocd + EOCD.size + len(lay.comment)
    if tail < size:
        regions.append((tail, size, Kind.TRAILING_DATA))
    return regions, [(s, e) for s, e, _ in spans]


_WHERE = {Kind.PREPENDED_DATA: "before the archive's first member",
          Kind.EMBEDDED_DATA: "that no member or directory record covers",
          Kind.TRAILING_DATA: "after the end of central directory record"}


def _scan(stream: IO[bytes], regions: list[tuple[int, int, Kind]], notes: Notes) -> list[int]:
    """Report uncovered bytes; search them for hidden headers. Returns EOCD offsets found."""
    budget, eocds = SCAN_BUDGET, []
    for start, end, kind in regions:
        notes.add(kind, f"{end - start} bytes at offset {start} {_WHERE[kind]}: room for "
                  "content other tools see (a polyglot file, a second archive)", start)
        pos = start
        while pos < end and budget > 0:
            chunk = _read_at(stream, pos, min(end - pos, 1 << 20, budget) + 3)
            budget -= len(chunk)
            for match in re.finditer(b"PK(\x03\x04|\x05\x06)", chunk):
                at = pos + match.start()
                if at >= end:
                    continue
                if match.group(1) == b"\x05\x06":
                    eocds.append(at)
                else:
                    notes.add(Kind.HIDDEN_ENTRY, f"a local file header at offset {at} that no "
                              "central directory entry points at: readers that walk local "
                              "headers see a member that others do not", at)
            pos += max(len(chunk) - 3, 1)
    return eocds


def _inside(offset: int, spans: list[Span]) -> bool:
    i = bisect.bisect_right(spans, (offset, 1 << 64)) - 1
    return any(s <= offset < e for s, e in spans[max(0, i - 64): i + 1])


def read_zip(stream: IO[bytes], *, size: int | None = None, max_members: int = 100_000,
             eocd_offset: int | None = None) -> ZipArchive:
    """Read a zip's structure (never member data). ``eocd_offset`` picks another EOCD's view."""
    size = _size_of(stream) if size is None else size
    candidates = eocd_candidates(stream, size)
    order = [eocd_offset] if eocd_offset is not None else candidates[:MAX_EOCD_TRIES]
    error = ZipFormatError("no end of central directory record: not a zip, or truncated")
    for pos in order:
        notes = Notes()
        try:
            lay = _layout(stream, size, pos)
            members = _central(stream, lay, max_members, notes)
            break
        except (ZipFormatError, struct.error) as exc:
            error = exc if isinstance(exc, ZipFormatError) else ZipFormatError(str(exc), pos)
    else:
        raise error
    if lay.spanned:
        notes.add(Kind.SPANNED, "the end record claims a multi-disk (spanned) archive",
                  lay.eocd)
    counted = len(members) < max_members and len(members) != lay.entries
    if counted or lay.entries_here != lay.entries:
        notes.add(Kind.COUNT_MISMATCH, f"the end record declares {lay.entries} entries "
                  f"({lay.entries_here} on this disk) but the central directory holds "
                  f"{len(members)}: readers that trust the count and readers that walk the "
                  "directory list different members", lay.eocd)
    # In file order: a stream over compressed data seeks backwards only by starting over.
    checked = {m.index: _local(stream, m, size, notes)
               for m in sorted(members, key=lambda m: m.header_offset)}
    members = [checked[i] for i in range(len(members))]
    _check_members(members, notes)
    regions, spans = _regions(stream, members, lay, size, notes)
    found = set(_scan(stream, regions, notes))
    found.update(c for c in candidates if not _inside(c, spans))
    others = tuple(sorted(found - {lay.eocd}))
    for other in others:
        notes.add(Kind.MULTIPLE_EOCD, f"another end of central directory record at offset "
                  f"{other}: readers that take the first one see a different archive than "
                  "CPython and PyTorch, which take the last", other)
    return ZipArchive(tuple(members), notes.done(), size, lay.eocd, lay.cd_start, lay.cd_size,
                      lay.prefix, lay.zip64, lay.comment, others)


# -- reading members ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberData:
    data: bytes
    #: ``"size"`` or ``"ratio"`` when a cap stopped the read (``data`` is a prefix).
    limit_hit: str | None
    #: Corrupt or truncated data; ``data`` is what decoded before it.
    error: str | None
    #: More data than the declared size (which CPython's zipfile stops at).
    overrun: bool
    crc_ok: bool | None

    @property
    def complete(self) -> bool:
        return self.limit_hit is None and self.error is None


def open_member(stream: IO[bytes], member: ZipMember, *, limits: Limits,
                cap: int | None = None, close_source: bool = False) -> BoundedReader:
    """A buffered, seekable stream of the member's bytes, capped by ``limits`` and ``cap``.

    At a cap the stream ends early and ``.decoded.limit_hit`` says which; corrupt data ends
    it with ``.decoded.error``. Raises :class:`ZipFormatError` for members that cannot be
    decoded at all (encrypted, unknown method, no local header).
    """
    if member.encrypted:
        raise ZipFormatError(f"member {member.name!r} is encrypted", member.header_offset)
    codec = CODECS.get(member.method)
    if codec is None:
        raise ZipFormatError(f"member {member.name!r}: unsupported compression method "
                             f"{member.method}", member.header_offset)
    if member.data_offset is None:
        raise ZipFormatError(f"member {member.name!r} has no valid local header",
                             member.header_offset)
    limit = limits.max_decompressed_size if cap is None else min(cap, limits.max_decompressed_size)
    raw = DecodedStream(
        stream, codec, start=member.data_offset, length=member.compressed_size,
        max_output=limit, max_ratio=None if codec == "stored" else limits.max_compression_ratio,
        expected_size=member.uncompressed_size, expected_crc=member.crc,
        close_source=close_source)
    return BoundedReader(raw)


def read_member(stream: IO[bytes], member: ZipMember, limit: int, *, limits: Limits
                ) -> MemberData:
    """The member's first ``limit`` bytes at most, with why the read stopped."""
    with open_member(stream, member, limits=limits, cap=limit) as reader:
        data = reader.read()
        d = reader.decoded
        return MemberData(data, d.limit_hit, d.error, d.overrun, d.crc_ok)
