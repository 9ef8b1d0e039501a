"""A bounded tar header reader: headers only, parsed here, never extracting anything.

Why not :mod:`tarfile`: it reads a pax or GNU long-name header's whole body in one read of
whatever size the header claims, and it parses pax records with a regular expression that
is quadratic on crafted input (CVE-2024-6232, fixed after the 3.11.7 this project tests
on). A scanner must stay linear and bounded on hostile input, and tar headers are simple:
512-byte blocks with octal (or base-256) numbers, a checksum, and a few extension headers.

Handled: v7, ustar (with its name prefix), GNU (long names and links, old sparse headers,
skipped) and pax (``path``, ``linkpath``, ``size``; global headers too). Like CPython's
tarfile, the data of regular files and of unknown member types is skipped by size; other
types carry no data. A bad checksum or a truncated header raises :class:`TarFormatError`
(GNU tar skips such a header and goes on, CPython stops silently: they see different
members, so we report it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

BLOCK = 512
#: Longest GNU long name or pax header body accepted (real ones are a few KiB at most).
MAX_EXTENSION = 1 << 20
#: Extension headers (long names, pax) allowed before one member.
MAX_EXTENSION_RUN = 16
#: Old GNU sparse extension blocks accepted per member.
MAX_SPARSE_BLOCKS = 4096
#: Bytes after the end-of-archive marker searched for hidden content.
TRAILER_SCAN = 1 << 20

REGULAR, LINK, SYMLINK, CHAR, BLOCK_DEV, DIRECTORY, FIFO, CONTIGUOUS = "01234567"
_NO_DATA = {LINK, SYMLINK, CHAR, BLOCK_DEV, DIRECTORY, FIFO}
_KINDS = {REGULAR: "file", "\0": "file", "": "file", CONTIGUOUS: "file", LINK: "hardlink",
          SYMLINK: "symlink", CHAR: "character device", BLOCK_DEV: "block device",
          DIRECTORY: "directory", FIFO: "fifo", "S": "sparse file", "V": "volume label",
          "M": "multi-volume continuation", "D": "directory dump"}


class TarFormatError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class TarMember:
    name: str
    type: str
    size: int
    offset: int  # of the (first) header
    data_offset: int
    linkname: str
    mode: int
    #: Stored as GNU or pax sparse data: the bytes are not the file as extracted.
    sparse: bool = False

    @property
    def kind(self) -> str:
        if self.sparse:
            return "sparse file"
        return _KINDS.get(self.type, "file")  # unknown types are read as files, like tarfile

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _number(field: bytes, offset: int) -> int:
    """A numeric field: octal text, or GNU base-256 (first byte 0x80 or 0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"bad numeric field {text[:16]!r} in tar header", offset) from None


def _checksum_ok(block: bytes, offset: int) -> bool:
    stored = _number(block[148:156], offset)
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    signed = unsigned - sum(2 * b for b in block[:148] + block[156:] if b > 127)
    return stored in (unsigned, signed)


def looks_like_tar(head: bytes) -> bool:
    """A first block with the ustar magic, or a valid header checksum (v7 tars have no magic)."""
    if len(head) < BLOCK:
        return False
    block = head[:BLOCK]
    if block[257:262] == b"ustar":
        return True
    if block == bytes(BLOCK) or not block[0]:
        return False
    try:
        return _checksum_ok(block, 0)
    except TarFormatError:
        return False


def _pax(body: bytes, offset: int) -> dict[str, str]:
    """Parse ``"<len> <key>=<value>\\n"`` records in one linear pass."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos:pos + 1] != b"\0":
        space = body.find(b" ", pos, pos + 21)
        try:
            length = int(body[pos:space]) if space > pos else 0
        except ValueError:
            length = 0
        record = body[pos: pos + length]
        equals = record.find(b"=")
        if length <= 0 or len(record) < length or not record.endswith(b"\n") or equals < 0:
            raise TarFormatError("malformed pax header record", offset)
        key = record[space - pos + 1: equals].decode("utf-8", "replace")
        records[key] = record[equals + 1: -1].decode("utf-8", "replace")
        pos += length
    return records


class TarReader:
    """Walks the headers of a tar held in a seekable stream of known size."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self.stream, self.size = stream, size
        #: Offset of non-zero bytes after the end-of-archive marker, if any.
        self.trailing_offset: int | None = None
        self._globals: dict[str, str] = {}
        self._sparse = False

    def _block(self, offset: int) -> bytes:
        self.stream.seek(offset)
        data = self.stream.read(BLOCK)
        if 0 < len(data) < BLOCK:
            raise TarFormatError("truncated tar header", offset)
        return data

    def _body(self, offset: int, size: int) -> bytes:
        if size > MAX_EXTENSION:
            raise TarFormatError(f"extension header of {size} bytes is over the limit", offset)
        self.stream.seek(offset + BLOCK)
        body = self.stream.read(size)
        if len(body) < size:
            raise TarFormatError("truncated extension header", offset)
        return body

    def members(self) -> Iterator[TarMember]:
        offset, run = 0, 0
        long_name = long_link = None
        pax: dict[str, str] = {}
        first = None
        while True:
            if offset > self.size:
                raise TarFormatError("member data runs past the end of the archive", offset)
            block = self._block(offset)
            if not block or block == bytes(BLOCK):
                self._check_end(offset, block)
                return
            if not _checksum_ok(block, offset):
                raise TarFormatError("bad tar header checksum", offset)
            first = offset if first is None else first
            kind, size = block[156:157].decode("latin-1"), _number(block[124:136], offset)
            if size < 0:
                raise TarFormatError("negative member size", offset)
            if kind in ("L", "K", "x", "g"):
                run += 1
                if run > MAX_EXTENSION_RUN:
                    raise TarFormatError("too many extension headers in a row", offset)
                body = self._body(offset, size)
                if kind == "L":
                    long_name = _nts(body)
                elif kind == "K":
                    long_link = _nts(body)
                elif kind == "x":
                    pax.update(_pax(body, offset))
                else:
                    self._global(_pax(body, offset), offset)
                offset += BLOCK + _padded(size)
                continue
            name = self._field(pax, "path") or long_name or self._name(block)
            link = self._field(pax, "linkpath") or long_link or _nts(block[157:257])
            data_offset = offset + BLOCK
            sparse = kind == "S" or self._sparse or any(k.startswith("GNU.sparse.") for k in pax)
            if kind == "S":
                data_offset = self._skip_sparse(block, offset)
            if (pax_size := self._field(pax, "size")) is not None:
                size = int(pax_size) if pax_size.isdigit() else -1
                if size < 0:
                    raise TarFormatError("bad pax size", offset)
            yield TarMember(name, kind, size, first, data_offset, link,
                            _number(block[100:108], offset), sparse)
            offset = data_offset + (0 if kind in _NO_DATA else _padded(size))
            long_name = long_link = first = None
            pax, run = {}, 0

    def _field(self, pax: dict[str, str], key: str) -> str | None:
        return pax.get(key, self._globals.get(key))

    def _global(self, records: dict[str, str], offset: int) -> None:
        """A pax global header applies to every later member; keep it small."""
        self._globals.update(records)
        if sum(len(k) + len(v) for k, v in self._globals.items()) > MAX_EXTENSION:
            raise TarFormatError("pax global headers over the size limit", offset)
        self._sparse = any(k.startswith("GNU.sparse.") for k in self._globals)

    @staticmethod
    def _name(block: bytes) -> str:
        name = _nts(block[:100])
        if block[257:263] == b"ustar\x00":  # POSIX ustar: a prefix field (GNU uses it otherwise)
            prefix = _nts(block[345:500])
            if prefix:
                return f"{prefix}/{name}"
        return name

    def _skip_sparse(self, block: bytes, offset: int) -> int:
        """Old GNU sparse: extension blocks follow while the 'isextended' byte is set."""
        at, extended = offset + BLOCK, block[482]
        for _ in range(MAX_SPARSE_BLOCKS):
            if not extended:
                return at
            ext = self._block(at)
            if not ext:
                raise TarFormatError("truncated sparse header", at)
            extended, at = ext[504], at + BLOCK
        raise TarFormatError("too many sparse extension blocks", offset)

    def _check_end(self, offset: int, block: bytes) -> None:
        """At the end marker (or end of file): is anything but zeros hidden after it?"""
        at = offset + len(block)
        end = min(self.size, at + TRAILER_SCAN)
        self.stream.seek(at)
        while at < end:
            chunk = self.stream.read(min(1 << 16, end - at))
            if not chunk:
                return
            stripped = chunk.lstrip(b"\0")
            if stripped:
                self.trailing_offset = at + len(chunk) - len(stripped)
                return
            at += len(chunk)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
