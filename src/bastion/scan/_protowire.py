"""The Protocol Buffers wire format, read field by field from a seekable stream, with bounds.

Model formats built on protobuf (TensorFlow SavedModel, Keras metadata, ONNX) are parsed
here without their schemas or the protobuf runtime: the analyzers know the few field
numbers they need and skip everything else by seeking, so a multi-gigabyte constant is
never read. Each length is checked against its enclosing message, every varint is bounded
to ten bytes, and the number of fields read is capped; nesting depth is the caller's, who
descends only into the messages it knows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, NamedTuple

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_WINDOW = 1 << 16


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


class WireLimit(ValueError):
    """The message has more fields than the reader's budget."""


class Field(NamedTuple):
    """One field: for LEN fields ``value`` is the payload's offset and ``length`` its size."""

    number: int
    wire: int
    value: int
    length: int = 0
    #: Offset of the field's tag, for locations.
    at: int = 0

    @property
    def end(self) -> int:
        return self.value + self.length


class Reader:
    """Reads fields from ``[start, end)`` ranges of a stream through a small window."""

    def __init__(self, stream: IO[bytes], size: int, *, max_fields: int = 20_000_000) -> None:
        self.stream, self.size, self.max_fields = stream, size, max_fields
        self.fields_read = 0
        self._buf = b""
        self._buf_at = 0

    def _window(self, pos: int, need: int) -> tuple[bytes, int]:
        """A buffer holding ``pos`` (and up to ``need`` bytes after it), and pos within it."""
        if not (self._buf_at <= pos and pos + need <= self._buf_at + len(self._buf)):
            self.stream.seek(pos)
            self._buf = self.stream.read(max(_WINDOW, need))
            self._buf_at = pos
        return self._buf, pos - self._buf_at

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; the caller bounds ``length``."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise WireError(f"read of {length} bytes at {offset} is outside the file")
        if length <= _WINDOW:
            buf, i = self._window(offset, length)
            data = buf[i:i + length]
        else:
            self.stream.seek(offset)
            data = self.stream.read(length)
        if len(data) != length:
            raise WireError(f"short read at {offset}")
        return data

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """A varint at ``pos`` that must end before ``end``: (value, position after it)."""
        buf, i = self._window(pos, 10)
        value = shift = 0
        for step in range(10):
            if pos + step >= end or i + step >= len(buf):
                raise WireError(f"truncated varint at {pos}")
            byte = buf[i + step]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value >= 1 << 64:
                    raise WireError(f"varint at {pos} overflows 64 bits")
                return value, pos + step + 1
            shift += 7
        raise WireError(f"varint at {pos} is longer than ten bytes")

    def fields(self, start: int, end: int) -> Iterator[Field]:
        """The fields of the message occupying ``[start, end)``."""
        if end > self.size:
            raise WireError(f"message end {end} is past the end of the file")
        pos = start
        buf, base = self._buf, self._buf_at
        while pos < end:
            self.fields_read += 1
            if self.fields_read > self.max_fields:
                raise WireLimit(f"more than {self.max_fields} protobuf fields")
            at = pos
            if not (base <= pos and pos + 2 <= base + len(buf) and pos + 2 <= end):
                buf, i = self._window(pos, 24)
                base = pos - i
            key = buf[pos - base]
            if key < 0x80:  # one-byte tag: the common case, decoded inline
                pos += 1
            else:
                key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise WireError(f"field number 0 at {at}")
            if wire == LEN:
                if pos < end and base <= pos < base + len(buf) and buf[pos - base] < 0x80:
                    length, pos = buf[pos - base], pos + 1
                else:
                    length, pos = self.varint(pos, end)
                if pos + length > end:
                    raise WireError(f"field {number} at {at} runs past its message")
                yield Field(number, wire, pos, length, at)
                pos += length
            elif wire == VARINT:
                value, pos = self.varint(pos, end)
                yield Field(number, wire, value, 0, at)
            elif wire in (I64, I32):
                width = 8 if wire == I64 else 4
                if pos + width > end:
                    raise WireError(f"truncated fixed-width field at {at}")
                yield Field(number, wire, int.from_bytes(self.read(pos, width), "little"), 0, at)
                pos += width
            else:
                raise WireError(f"unsupported wire type {wire} at {at}")

    def text(self, field: Field, limit: int = 1024) -> str:
        """A string field's first ``limit`` bytes, decoded leniently."""
        if field.wire != LEN:
            raise WireError(f"field {field.number} at {field.at} is not length-delimited")
        return self.read(field.value, min(field.length, limit)).decode("utf-8", "replace")

    def messages(self, start: int, end: int, number: int) -> Iterator[Field]:
        """The length-delimited fields numbered ``number`` of the message at [start, end)."""
        for field in self.fields(start, end):
            if field.number == number and field.wire == LEN:
                yield field
