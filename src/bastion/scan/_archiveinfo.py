"""The values the zip reader produces (records, members, discrepancies) and safe-name checks.

:mod:`bastion.scan.ziputil` parses zips into these values and re-exports them; the archive
analyzer reports them. The member-name checks (zip-slip, CWE-22) apply to tar members too.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from bastion.scan.boundedio import Codec

EOCD = struct.Struct("<4sHHHHLLH")  # sig, disk, cd disk, entries here, entries, size, offset
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # sig, disk of record, record offset, disks
ZIP64_EOCD = struct.Struct("<4sQHHLLQQQQ")  # ..., entries here, entries, cd size, cd offset
CENTRAL = struct.Struct("<4sHHHHHHLLLHHHHHLL")
LOCAL = struct.Struct("<4sHHHHHLLLHH")
LOCAL_SIG, CENTRAL_SIG, EOCD_SIG = b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06"
ZIP64_EOCD_SIG, ZIP64_LOCATOR_SIG = b"PK\x06\x06", b"PK\x06\x07"
#: Where an EOCD may start: the record plus the longest comment.
TAIL = EOCD.size + 0xFFFF
#: Compression methods we decode: stored, deflate, bzip2, lzma.
CODECS: dict[int, Codec] = {0: "stored", 8: "deflate", 12: "bzip2", 14: "lzma-zip"}
#: Discrepancies of one kind listed individually; the rest are counted in one more.
MAX_PER_KIND = 16
FLAG_ENCRYPTED, FLAG_DESCRIPTOR, FLAG_STRONG, FLAG_UTF8 = 0x1, 0x8, 0x40, 0x800


class ZipFormatError(Exception):
    """The archive cannot be read as a zip at all (no usable EOCD, broken central directory)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class Kind(StrEnum):
    """What disagrees. Each kind lets two zip readers see different content."""

    DUPLICATE_NAME = "duplicate-name"
    NAME_MISMATCH = "name-mismatch"  # central directory vs local header name
    HEADER_MISMATCH = "header-mismatch"  # method, flags or sizes differ, or lie
    BAD_LOCAL_HEADER = "bad-local-header"
    TRUNCATED = "truncated"  # member data runs past the end of the file
    OVERLAP = "overlap"  # member data ranges overlap (Fifield's overlapping zip bomb)
    PREPENDED_DATA = "prepended-data"
    EMBEDDED_DATA = "embedded-data"  # between members, or around the central directory
    TRAILING_DATA = "trailing-data"  # after the EOCD and its comment
    HIDDEN_ENTRY = "hidden-entry"  # a local file header no central entry points at
    MULTIPLE_EOCD = "multiple-eocd"  # another archive, read by readers that take the first
    COUNT_MISMATCH = "count-mismatch"
    SPANNED = "spanned"  # multi-disk fields set
    ENCRYPTED = "encrypted"
    UNKNOWN_METHOD = "unknown-method"
    UNSAFE_NAME = "unsafe-name"
    MEMBER_LIMIT = "member-limit"


@dataclass(frozen=True)
class Discrepancy:
    kind: Kind
    message: str
    offset: int | None = None
    member: str | None = None
    #: For UNSAFE_NAME: the :class:`NameIssue` values found.
    detail: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZipMember:
    """One central directory entry, with where its data really is."""

    index: int
    name: str
    raw_name: bytes
    header_offset: int  # absolute offset of the local header in the file
    #: Absolute offset of the data; None when the local header is missing or broken.
    data_offset: int | None
    compressed_size: int
    uncompressed_size: int
    method: int
    flags: int
    crc: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (FLAG_ENCRYPTED | FLAG_STRONG)) or self.method == 99

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/") and self.uncompressed_size == 0

    @property
    def data_end(self) -> int | None:
        return None if self.data_offset is None else self.data_offset + self.compressed_size


@dataclass(frozen=True)
class ZipArchive:
    members: tuple[ZipMember, ...]
    discrepancies: tuple[Discrepancy, ...]
    size: int
    eocd_offset: int
    cd_offset: int  # absolute
    cd_size: int
    #: Bytes before the archive proper (CPython's ``concat``): offsets are shifted by it.
    prefix: int
    zip64: bool
    comment: bytes
    #: Offsets of other EOCD records outside member data: other views of the file.
    other_eocds: tuple[int, ...]


# -- names -------------------------------------------------------------------------------------


class NameIssue(StrEnum):
    ABSOLUTE = "absolute path"
    DRIVE = "drive letter"
    PARENT = "parent-directory component"
    BACKSLASH = "backslash separator"
    NUL = "NUL byte"
    CONTROL = "control character"


#: Issues that let extraction write outside the target folder (zip-slip, CWE-22).
TRAVERSAL = frozenset({NameIssue.ABSOLUTE, NameIssue.DRIVE, NameIssue.PARENT})
_CONTROL = re.compile(r"[\x01-\x1f\x7f]")
#: Names without any of these are safe; most are, so they skip the detailed checks.
_ODD = re.compile(r"^/|[\\:\x00-\x1f\x7f]|\.[. ]*\.")


def name_issues(name: str) -> tuple[NameIssue, ...]:
    """What is unsafe about an archive member name, as Windows or POSIX extractors read it.

    Backslashes count as separators (Windows extractors split on them), and a component of
    only dots and spaces with two or more dots counts as ``..`` (Windows strips trailing
    dots and spaces).
    """
    if not _ODD.search(name):
        return ()
    issues: list[NameIssue] = []
    norm = name.replace("\\", "/")
    if norm.startswith("/"):
        issues.append(NameIssue.ABSOLUTE)
    if re.match(r"[A-Za-z]:", norm):
        issues.append(NameIssue.DRIVE)
    if any(part.count(".") >= 2 and not part.strip(". ") for part in norm.split("/")):
        issues.append(NameIssue.PARENT)
    if "\\" in name:
        issues.append(NameIssue.BACKSLASH)
    if "\x00" in name:
        issues.append(NameIssue.NUL)
    if _CONTROL.search(name):
        issues.append(NameIssue.CONTROL)
    return tuple(issues)


def decode_name(raw: bytes, flags: int) -> str:
    """UTF-8 when flag bit 11 says so, else CP437, as CPython's zipfile decodes names."""
    return raw.decode("utf-8", "replace") if flags & FLAG_UTF8 else raw.decode("cp437")


class Notes:
    """Collects discrepancies, at most :data:`MAX_PER_KIND` of each kind, then a count."""

    def __init__(self) -> None:
        self.items: list[Discrepancy] = []
        self.counts: Counter[Kind] = Counter()
        self.omitted: dict[Kind, set[str]] = {}  # details of the unlisted ones, per kind

    def add(self, kind: Kind, message: str, offset: int | None = None,
            member: str | None = None, detail: tuple[str, ...] = ()) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_PER_KIND:
            self.items.append(Discrepancy(kind, message, offset, member, detail))
        else:
            self.omitted.setdefault(kind, set()).update(detail)

    def done(self) -> tuple[Discrepancy, ...]:
        extra = [Discrepancy(kind, f"{n - MAX_PER_KIND} more {kind} discrepancies not listed",
                             detail=tuple(sorted(self.omitted.get(kind, ()))))
                 for kind, n in self.counts.items() if n > MAX_PER_KIND]
        return (*self.items, *extra)
