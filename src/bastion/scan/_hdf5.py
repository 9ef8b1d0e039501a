"""Read the string attributes of an HDF5 file's root group, in pure Python, with bounds.

Keras' legacy ``.h5`` format keeps the whole model architecture as a JSON string in the
root group's ``model_config`` attribute (and the compile settings in ``training_config``).
That string is all Bastion needs, so this module follows only the path to it: the
superblock, the root group's object header (with its continuation blocks), its attribute
messages, and, for variable-length strings, one object in a global heap collection.

Why not h5py: h5py hands the file to the HDF5 C library, which has a long record of memory
safety bugs on crafted files; a scanner that crashes (or worse) on the file it is vetting
is no gate. Every address and length here is checked against the file size before it is
read, every loop is bounded, and a structure this reader does not follow (attributes in
dense storage, shared messages, committed datatypes) is reported as such so the caller can
fall back to a raw scan instead of trusting silence.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Where the superblock may start inside the first 4 KiB: HDF5 allows a user block of
#: 512 bytes times a power of two in front of it.
_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048)
_MAX_BLOCKS = 256  # object header chunks followed
_MAX_BLOCK_SIZE = 16 << 20  # bytes in one object header chunk (real ones are kilobytes)
_MAX_MESSAGES = 65_536  # header messages looked at
_MAX_HEAP_OBJECTS = 1_000_000  # global heap objects walked to find one
_MAX_ELEMENTS = 64  # string elements read from one attribute

_LINK = 0x0006
_ATTRIBUTE = 0x000C
_ATTRIBUTE_INFO = 0x0015
_CONTINUATION = 0x0010
_SHARED_FLAG = 0x02


class HDF5Error(ValueError):
    """The file is not well-formed HDF5 along the path this reader follows."""


class HDF5Limit(ValueError):
    """A string is larger than the caller's bound."""


@dataclass(frozen=True)
class Attribute:
    """One root attribute: its name, its string values (empty if not a string) and where."""

    name: str
    values: tuple[bytes, ...]
    offset: int
    #: True when the value could not be decoded (committed datatype, odd layout).
    opaque: bool = False


@dataclass
class RootAttributes:
    attributes: list[Attribute] = field(default_factory=list)
    #: Names of the root group's links kept in its header (new-style groups only).
    links: list[str] = field(default_factory=list)
    #: Features on the root group this reader does not follow; non-empty means "look again".
    unfollowed: list[str] = field(default_factory=list)


def superblock_offset(head: bytes) -> int | None:
    """Where the HDF5 superblock starts within the first bytes, or None if not HDF5."""
    for offset in _SUPERBLOCK_OFFSETS:
        if head[offset:offset + 8] == SIGNATURE:
            return offset
    return None


class _File:
    """Bounded random access: every read is checked against the file size."""

    def __init__(self, stream: IO[bytes], size: int, base: int) -> None:
        self.stream, self.size, self.base = stream, size, base
        self.offset_size = 8
        self.length_size = 8

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise HDF5Error(f"read of {length} bytes at {offset} runs past the end of the file")
        self.stream.seek(offset)
        data = self.stream.read(length)
        if len(data) != length:
            raise HDF5Error(f"short read at {offset}")
        return data

    def address(self, data: bytes, pos: int) -> int | None:
        """An address field, made absolute; None for the 'undefined' address."""
        raw = data[pos:pos + self.offset_size]
        if len(raw) != self.offset_size:
            raise HDF5Error("truncated address field")
        if raw == b"\xff" * self.offset_size:
            return None
        return self.base + int.from_bytes(raw, "little")

    def length(self, data: bytes, pos: int) -> int:
        raw = data[pos:pos + self.length_size]
        if len(raw) != self.length_size:
            raise HDF5Error("truncated length field")
        return int.from_bytes(raw, "little")


def read_root_attributes(
    stream: IO[bytes], size: int, base: int, *, max_string: int
) -> RootAttributes:
    """The root group's attributes. Raises HDF5Error (malformed) or HDF5Limit."""
    f = _File(stream, size, base)
    root = _root_header_address(f)
    result = RootAttributes()
    for kind, flags, offset, length in _messages(f, root):
        if kind == _ATTRIBUTE_INFO:
            if _has_dense_storage(f, f.read(offset, length)):
                result.unfollowed.append("attributes in dense storage (fractal heap)")
        elif kind == _LINK and len(result.links) < 1024:
            name = _link_name(f.read(offset, length))
            if name is not None:
                result.links.append(name)
        elif kind == _ATTRIBUTE:
            if flags & _SHARED_FLAG:
                result.unfollowed.append("a shared attribute message")
                continue
            result.attributes.append(_attribute(f, offset, f.read(offset, length), max_string))
    return result


def _root_header_address(f: _File) -> int:
    sb = f.read(f.base, min(128, f.size - f.base))
    version = sb[8] if len(sb) > 8 else -1
    if version in (0, 1):
        if len(sb) < 16:
            raise HDF5Error("truncated superblock")
        f.offset_size, f.length_size = sb[13], sb[14]
        start = 24 if version == 0 else 28
        # base, free-space, end-of-file and driver addresses, then the root symbol table
        # entry: link name offset, then the object header address.
        field_at = start + 5 * f.offset_size
    elif version in (2, 3):
        if len(sb) < 12:
            raise HDF5Error("truncated superblock")
        f.offset_size, f.length_size = sb[9], sb[10]
        field_at = 12 + 3 * f.offset_size  # base, extension, end-of-file, then root
    else:
        raise HDF5Error(f"unknown superblock version {version}")
    if f.offset_size not in (2, 4, 8) or f.length_size not in (2, 4, 8):
        raise HDF5Error("invalid offset or length size in the superblock")
    address = f.address(sb, field_at)
    if address is None:
        raise HDF5Error("the root group has no object header")
    return address


def _messages(f: _File, address: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, flags, data offset, data length) of every message in an object header."""
    prefix = f.read(address, min(16, f.size - address))
    if prefix[:4] == b"OHDR":
        yield from _messages_v2(f, address)
    elif prefix[:1] == b"\x01" and len(prefix) == 16:
        header_size = int.from_bytes(prefix[8:12], "little")
        yield from _walk_blocks(f, [(address + 16, header_size)], version=1)
    else:
        raise HDF5Error(f"no object header at {address}")


def _messages_v2(f: _File, address: int) -> Iterator[tuple[int, int, int, int]]:
    head = f.read(address, min(32, f.size - address))
    if len(head) < 7 or head[4] != 2:
        raise HDF5Error("unsupported version 2 object header")
    flags = head[5]
    pos = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    if pos + width > len(head):
        raise HDF5Error("truncated object header")
    chunk = int.from_bytes(head[pos:pos + width], "little")
    start = address + pos + width
    yield from _walk_blocks(f, [(start, chunk)], version=2, creation_order=bool(flags & 0x04))


def _walk_blocks(
    f: _File, blocks: list[tuple[int, int]], *, version: int, creation_order: bool = False
) -> Iterator[tuple[int, int, int, int]]:
    seen: set[int] = set()
    count = 0
    header = 8 if version == 1 else 4 + (2 if creation_order else 0)
    while blocks:
        start, length = blocks.pop(0)
        if start in seen or len(seen) >= _MAX_BLOCKS:
            raise HDF5Error("object header continuation blocks loop or are too many")
        seen.add(start)
        if length > _MAX_BLOCK_SIZE:
            raise HDF5Error(f"object header chunk of {length} bytes at {start}")
        data = f.read(start, length)
        pos = 0
        while pos + header <= len(data):
            if version == 1:
                kind, size = struct.unpack_from("<HH", data, pos)
                flags = data[pos + 4]
            else:
                kind, size, flags = data[pos], int.from_bytes(data[pos + 1:pos + 3], "little"), \
                    data[pos + 3]
            body = pos + header
            if body + size > len(data):
                raise HDF5Error(f"header message at {start + pos} runs past its block")
            count += 1
            if count > _MAX_MESSAGES:
                raise HDF5Error("too many object header messages")
            if kind == _CONTINUATION:
                target = f.address(data, body)
                span = f.length(data, body + f.offset_size)
                if target is not None:
                    blocks.append(_continuation(f, target, span, version))
            else:
                yield kind, flags, start + body, size
            pos = body + size


def _continuation(f: _File, target: int, span: int, version: int) -> tuple[int, int]:
    if version == 1:
        return target, span
    if f.read(target, 4) != b"OCHK" or span < 8:
        raise HDF5Error(f"bad continuation block at {target}")
    return target + 4, span - 8  # signature in front, checksum behind


def _has_dense_storage(f: _File, data: bytes) -> bool:
    if len(data) < 2:
        raise HDF5Error("truncated attribute info message")
    pos = 2 + (2 if data[1] & 0x01 else 0)
    return f.address(data, pos) is not None


def _link_name(data: bytes) -> str | None:
    """The name in a link message: version, flags, optional fields, then a sized name."""
    if len(data) < 3 or data[0] != 1:
        return None
    flags = data[1]
    pos = 2 + (1 if flags & 0x08 else 0) + (8 if flags & 0x04 else 0) + (
        1 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    size = int.from_bytes(data[pos:pos + width], "little")
    name = data[pos + width:pos + width + size]
    return name.decode("utf-8", "replace") if len(name) == size else None


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _attribute(f: _File, offset: int, data: bytes, max_string: int) -> Attribute:
    if len(data) < 8 or data[0] not in (1, 2, 3):
        raise HDF5Error(f"bad attribute message at {offset}")
    version, flags = data[0], data[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", data, 2)
    pos = 9 if version == 3 else 8
    pad = _pad8 if version == 1 else (lambda n: n)
    name = data[pos:pos + name_size].split(b"\0", 1)[0].decode("utf-8", "replace")
    pos += pad(name_size)
    dtype = data[pos:pos + type_size]
    pos += pad(type_size)
    space = data[pos:pos + space_size]
    pos += pad(space_size)
    if len(dtype) != type_size or len(space) != space_size or pos > len(data):
        raise HDF5Error(f"attribute {name!r} at {offset} is truncated")
    if version > 1 and flags & 0x03:
        return Attribute(name, (), offset, opaque=True)  # committed datatype or dataspace
    count = _element_count(f, space)
    values = _string_values(f, dtype, data[pos:], count, max_string)
    return Attribute(name, values or (), offset, opaque=values is None)


def _element_count(f: _File, space: bytes) -> int:
    if len(space) < 4:
        raise HDF5Error("truncated dataspace")
    version, rank = space[0], space[1]
    if version == 2 and space[3] == 2:
        return 0  # null dataspace
    dims_at = 8 if version == 1 else 4
    count = 1
    for i in range(rank):
        count *= f.length(space, dims_at + i * f.length_size)
    return count


def _string_values(
    f: _File, dtype: bytes, raw: bytes, count: int, max_string: int
) -> tuple[bytes, ...] | None:
    """The string elements of an attribute; () if it is not a string, None if opaque."""
    if len(dtype) < 8:
        raise HDF5Error("truncated datatype")
    cls, size = dtype[0] & 0x0F, int.from_bytes(dtype[4:8], "little")
    count = min(count, _MAX_ELEMENTS)
    if cls == 3:  # fixed-length string, stored inline
        if size > max_string:
            raise HDF5Limit(f"a {size}-byte string attribute is over the limit of {max_string}")
        if size * count > len(raw):
            raise HDF5Error("attribute data shorter than its datatype says")
        # as numpy reads fixed-length strings: trailing padding nulls dropped
        return tuple(raw[i * size:(i + 1) * size].rstrip(b"\0") for i in range(count))
    if cls != 9:
        return ()
    unit = 1
    if dtype[1] & 0x0F == 0:  # a sequence: its base type gives the element size
        unit = int.from_bytes(dtype[12:16], "little") if len(dtype) >= 16 else 0
        if unit != 1:
            return None
    step = 4 + f.offset_size + 4
    if step * count > len(raw):
        raise HDF5Error("attribute data shorter than its datatype says")
    values = []
    for i in range(count):
        pos = i * step
        length = int.from_bytes(raw[pos:pos + 4], "little")
        collection = f.address(raw, pos + 4)
        index = int.from_bytes(raw[pos + 4 + f.offset_size:pos + step], "little")
        if length > max_string:
            raise HDF5Limit(f"a {length}-byte string attribute is over the limit of {max_string}")
        values.append(b"" if collection is None else _heap_object(f, collection, index, length))
    return tuple(values)


def _heap_object(f: _File, collection: int, index: int, length: int) -> bytes:
    """Object ``index`` of the global heap collection at ``collection``, first ``length`` bytes."""
    head = f.read(collection, 8 + f.length_size)
    if head[:4] != b"GCOL":
        raise HDF5Error(f"no global heap collection at {collection}")
    end = collection + f.length(head, 8)
    pos = collection + 8 + f.length_size
    entry = 8 + f.length_size
    for _ in range(_MAX_HEAP_OBJECTS):
        if pos + entry > end:
            break
        item = f.read(pos, entry)
        number = int.from_bytes(item[:2], "little")
        size = f.length(item, 8)
        if number == 0:
            break  # free space: the end of the objects
        if number == index:
            if length > size:
                raise HDF5Error(f"heap object {index} is shorter than its reference says")
            return f.read(pos + entry, length)
        pos += entry + _pad8(size)
    raise HDF5Error(f"global heap object {index} not found in the collection at {collection}")
