"""Bounded, buffered reading of hostile binary files, shared by the model-format analyzers.

Format parsers (GGUF, ONNX protobuf) read many tiny fields and skip large blobs (tensor
data). Reading each field with its own ``read`` call is slow, and reading blobs to skip them
wastes memory; :class:`BinReader` serves small reads from one window buffer and turns skips
into position changes, so a multi-gigabyte model costs a few small reads. Every read is
checked against the end of the file: running past it raises :class:`Truncated`, which the
analyzers report as a malformed file instead of crashing.

:func:`capped` bounds how many findings one rule may raise on one file, so a header with
a million broken entries gives a readable report, not a million lines.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from bastion.analyzer import Target
from bastion.findings import Finding, Location
from bastion.rules import Rule

#: Bytes fetched per refill of the window; small enough to keep memory flat.
WINDOW = 1 << 16


@contextmanager
def opened(target: Target) -> Iterator[BinaryIO]:
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

    def __init__(self, stream: BinaryIO, size: int, *, window: int = WINDOW) -> None:
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
