"""A bounded, buffered byte reader for the pickle machine.

It reads a stream in chunks, never more than it is asked for plus one chunk, and skips large
payloads (tensor bytes, array data) with ``seek`` instead of reading them.
"""

from __future__ import annotations

from typing import IO

CHUNK = 1 << 16


class Truncated(Exception):
    """The stream ended before the structure it was reading."""


class Reader:
    def __init__(self, stream: IO[bytes], start: int = 0, size: int | None = None) -> None:
        self._stream = stream
        self._base = start  # absolute offset of _buf[0]
        self._buf = b""
        self._pos = 0
        self._end = None if size is None else start + size
        stream.seek(start)

    def tell(self) -> int:
        return self._base + self._pos

    @property
    def at_end(self) -> bool:
        if self._pos < len(self._buf):
            return False
        return not self._fill(1)

    def _fill(self, n: int) -> bool:
        """Make ``n`` bytes available at the cursor; False if the stream ends first."""
        avail = len(self._buf) - self._pos
        if avail >= n:
            return True
        rest = self._buf[self._pos:]
        self._base += self._pos
        self._pos = 0
        want = max(n - avail, CHUNK)
        if self._end is not None:
            want = min(want, self._end - (self._base + len(rest)))
        parts = [rest]
        got = len(rest)
        while got < n and want > 0:
            chunk = self._stream.read(want)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            want -= len(chunk)
        self._buf = b"".join(parts)
        return got >= n

    def read(self, n: int) -> bytes:
        if n < 0:
            raise Truncated("negative length")
        if not self._fill(n):
            raise Truncated(f"needed {n} bytes at offset {self.tell()}")
        data = self._buf[self._pos:self._pos + n]
        self._pos += n
        return data

    def opcode(self) -> tuple[int, int]:
        """(offset, byte) of the next opcode: the machine's hot path, one call per opcode."""
        pos = self._pos
        if pos >= len(self._buf):
            if not self._fill(1):
                raise Truncated(f"stream ends at offset {self.tell()}")
            pos = self._pos
        self._pos = pos + 1
        return self._base + pos, self._buf[pos]

    def byte(self) -> int:
        if self._pos >= len(self._buf) and not self._fill(1):
            raise Truncated(f"stream ends at offset {self.tell()}")
        value = self._buf[self._pos]
        self._pos += 1
        return value

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos:self._pos + n]

    def readline(self, limit: int) -> bytes:
        """A line without its newline; ``Truncated`` when none ends within ``limit`` bytes."""
        searched = self._pos
        while True:
            stop = min(len(self._buf), self._pos + limit + 1)
            idx = self._buf.find(b"\n", searched, stop)
            if idx >= 0:
                line = self._buf[self._pos:idx]
                self._pos = idx + 1
                return line
            avail = len(self._buf) - self._pos
            searched_rel = avail
            if avail > limit or not self._fill(min(avail + max(CHUNK, avail), limit + 1)):
                if len(self._buf) - self._pos > avail:  # got more, but not all asked for
                    searched = self._pos + searched_rel
                    continue
                raise Truncated(f"no end of line within {limit} bytes at offset {self.tell()}")
            searched = self._pos + searched_rel

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes without keeping them."""
        if n < 0:
            raise Truncated("negative length")
        avail = len(self._buf) - self._pos
        if n <= avail:
            self._pos += n
            return
        target = self.tell() + n
        if self._end is not None and target > self._end:
            raise Truncated(f"a {n}-byte field runs past the end of the stream")
        self._stream.seek(target)
        if target > self._base + len(self._buf) and self._end is None:
            # Without a known size, prove the bytes exist before moving on.
            self._stream.seek(target - 1)
            if not self._stream.read(1):
                raise Truncated(f"a {n}-byte field runs past the end of the stream")
        self._base = target
        self._buf = b""
        self._pos = 0
