"""Bounded, buffered reading of hostile binary files, shared by the model-format analyzers.

Format parsers (GGUF, ONNX protobuf) read many tiny fields and skip large blobs (tensor
data). Reading each field with its own ``read`` call is slow, and reading blobs to skip them
wastes memory; :class:`BinReader` serves small reads from one window buffer and turns skips
into position changes, so a multi-gigabyte model costs a few small reads. Every read is
checked against the end of the file: running past it raises :class:`Truncated`, which the
analyzers report as a malformed file instead of crashing. :class:`ProtoFields` walks the
protobuf wire format on top of it (ONNX, and any other protobuf-based model format).

:func:`capped` bounds how many findings one rule may raise on one file, so a header with
a million broken entries gives a readable report, not a million lines.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from bastion.analyzer import Target
from bastion.findings import Finding, Location
from bastion.rules import Rule

#: Bytes fetched per refill of the window; small enough to keep memory flat.
WINDOW = 1 << 16


@contextmanager
def opened(target: Target) -> Iterator[IO[bytes]]:
    """The target's bytes as a stream; a small file already held in ``head`` is not reopened."""
    if len(target.head) >= target.size:
        yield io.BytesIO(target.head[:target.size])
        return
    stream = target.open()
    try:
        yield stream
    finally:
        stream.close()


class Truncated(Exception):
    """A read ran past the end of the file (or of the region being parsed)."""


class BinReader:
    """A forward reader over a seekable stream of known size, with a read window."""

    def __init__(self, stream: IO[bytes], size: int, *, window: int = WINDOW) -> None:
        self._stream = stream
        self.size = size
        self._window = window
        self._buf = b""
        self._buf_start = 0
        self.pos = 0

    def seek(self, pos: int) -> None:
        """Move to ``pos``; free, nothing is read until the next :meth:`read`."""
        if pos < 0 or pos > self.size:
            raise Truncated(f"offset {pos} is outside the file ({self.size} bytes)")
        self.pos = pos

    def skip(self, count: int) -> None:
        """Step over ``count`` bytes without reading them."""
        self.seek(self.pos + count)

    def remaining(self) -> int:
        return self.size - self.pos

    def read(self, count: int) -> bytes:
        """Exactly ``count`` bytes at the current position, or :class:`Truncated`."""
        if count < 0 or self.pos + count > self.size:
            raise Truncated(
                f"{count} bytes at offset {self.pos} run past the end ({self.size} bytes)"
            )
        offset = self.pos - self._buf_start
        if offset >= 0 and offset + count <= len(self._buf):
            self.pos += count
            return self._buf[offset:offset + count]
        if count >= self._window:  # a large read goes straight to the stream
            data = self._raw(self.pos, count)
        else:
            self._buf = self._raw(self.pos, min(self._window, self.size - self.pos))
            self._buf_start = self.pos
            data = self._buf[:count]
        self.pos += count
        return data

    def window(self, count: int) -> tuple[bytes, int]:
        """The buffer and the index of the current position in it, holding ``count`` bytes.

        For tight loops that decode many small items in place (``struct.unpack_from``);
        ``count`` is capped at what is left in the file and at the window size.
        """
        count = min(count, self.size - self.pos, self._window)
        offset = self.pos - self._buf_start
        if not (offset >= 0 and offset + count <= len(self._buf)):
            self._buf = self._raw(self.pos, min(self._window, self.size - self.pos))
            self._buf_start = self.pos
            offset = 0
        return self._buf, offset

    def _raw(self, pos: int, count: int) -> bytes:
        self._stream.seek(pos)
        data = self._stream.read(count)
        if len(data) != count:  # the file shrank under us
            raise Truncated(f"short read at offset {pos}: {len(data)} of {count} bytes")
        return data


class WireError(Exception):
    """Broken protobuf wire format (or a bound hit: ``limit``) at a file offset."""

    def __init__(self, message: str, offset: int, *, limit: bool = False) -> None:
        super().__init__(message)
        self.message, self.offset, self.limit = message, offset, limit


_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class ProtoFields:
    """Protobuf wire-format walking over a :class:`BinReader`, with a field budget.

    Subclasses walk the messages they care about with :meth:`fields_of` and let every
    other field be skipped by offset, so a parser of hostile protobuf never runs a
    general-purpose (C++) decoder and never reads blobs it does not need.
    """

    def __init__(self, reader: BinReader, max_fields: int, max_text: int) -> None:
        self.r = reader
        self.fields = 0
        self.max_fields = max_fields
        self.max_text = max_text

    def varint(self, end: int) -> int:
        """A varint ending before ``end``. The hot path of every walk: reads the window
        buffer in place and moves the position without re-validating it."""
        r = self.r
        start = r.pos
        buf, off = r._buf, start - r._buf_start
        if off < 0 or off + 10 > len(buf):
            buf, off = r.window(10)
        value = shift = 0
        for i in range(min(10, len(buf) - off, end - start)):
            byte = buf[off + i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                r.pos = start + i + 1  # inside the file: the bytes were in the buffer
                return value
            shift += 7
        if end - start >= 10 and len(buf) - off >= 10:
            raise WireError("varint longer than 10 bytes", start)
        raise WireError("varint runs past the end of its message", start)

    def fields_of(self, end: int) -> Iterator[tuple[int, int, int]]:
        """(field number, wire type, value or length) of each field up to ``end``.

        Fixed-size fields are skipped silently. For a length-delimited field the reader
        stands at its payload when yielded and is moved past it afterwards, whatever the
        consumer read.
        """
        while self.r.pos < end:
            at = self.r.pos
            tag = self.varint(end)
            number, wire = tag >> 3, tag & 7
            self.fields += 1
            if self.fields > self.max_fields:
                raise WireError(f"more than {self.max_fields} protobuf fields", at, limit=True)
            if number == 0:
                raise WireError("field number 0", at)
            if wire == _VARINT:
                yield number, wire, self.varint(end)
            elif wire in (_I64, _I32):
                size = 8 if wire == _I64 else 4
                if self.r.pos + size > end:
                    raise WireError("fixed-size field runs past the end of its message", at)
                self.r.skip(size)
            elif wire == _LEN:
                size = self.varint(end)
                start = self.r.pos
                if start + size > end:
                    raise WireError(f"field {number} of {size} bytes runs past the end of "
                                    "its message", at)
                yield number, wire, size
                self.r.pos = start + size  # within ``end``, hence within the file
            else:
                raise WireError(f"invalid wire type {wire} (field {number})", at)

    def text(self, size: int) -> str:
        """A string field's payload, cut at ``max_text`` bytes, decoded leniently."""
        return self.r.read(min(size, self.max_text)).decode("utf-8", "replace")

    def sub_end(self, size: int) -> int:
        """The end offset of the length-delimited payload the reader stands at."""
        return self.r.pos + size


def head_varint(data: bytes, pos: int) -> tuple[int | None, int]:
    """A varint decoded from an in-memory head; None when it does not end inside ``data``."""
    value = shift = 0
    for i in range(10):
        if pos + i >= len(data):
            return None, len(data)
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    return None, len(data)


def capped(
    findings: Iterable[Finding], rules: Iterable[Rule], location: Location, limit: int = 25
) -> Iterator[Finding]:
    """At most ``limit`` findings per rule, then one finding saying how many were left out."""
    by_id = {rule.id: rule for rule in rules}
    seen: Counter[str] = Counter()
    for finding in findings:
        seen[finding.rule_id] += 1
        if seen[finding.rule_id] <= limit:
            yield finding
    for rule_id, count in seen.items():
        if count > limit and rule_id in by_id:
            yield by_id[rule_id].finding(
                location,
                f"{count - limit} more findings of this kind in this file were left out",
                properties={"omitted": count - limit},
            )
