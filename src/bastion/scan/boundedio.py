"""Bounded decompressing streams over untrusted bytes, shared by every archive reader.

A member of a zip, a tar inside a gzip, an xz file: each is read through a
:class:`DecodedStream`, which decompresses one byte range of a source stream with hard caps
on the bytes it produces and on the compression ratio. It never holds more than one chunk
of input and the bytes asked for, and it never raises on hostile data: it stops, answers
end-of-file and says why in :attr:`DecodedStream.limit_hit` or :attr:`DecodedStream.error`,
so the caller reports a finding. It is seekable (forward by decoding and discarding,
backward by starting over), so a format parser that seeks can read a compressed member
without it ever being written to disk or held whole in memory.

Only the standard library decodes: zlib (deflate, gzip), bz2 and lzma (xz, lzma-alone, and
the raw LZMA of zip method 14).
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import IO, TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Bytes of compressed input read per step; also the buffer size of :func:`buffered`.
CHUNK = 1 << 16
#: The ratio cap applies only once this much was produced: tiny files compress absurdly well.
RATIO_FLOOR = 1 << 20
#: Memory liblzma may use to decode an xz or lzma-alone stream (``xz -9`` needs 65 MiB).
LZMA_MEMLIMIT = 256 << 20
#: Backward seeks allowed in compressed data (each decodes from the start again).
MAX_RESTARTS = 64
#: Decode steps in a row without output before the stream is declared stuck.
MAX_STALLS = 100_000
#: Largest LZMA dictionary accepted in a zip (method 14) member, where liblzma takes no limit.
MAX_LZMA_DICT = 256 << 20

Codec = Literal["stored", "deflate", "zlib", "bzip2", "lzma-zip", "gzip", "bzip2-stream", "xz",
                "lzma-alone", "lz4-frame"]
#: Codecs whose files may hold several streams back to back (``cat a.gz b.gz``).
_MULTI = {"gzip": b"\x1f\x8b", "bzip2-stream": b"BZh", "xz": b"\xfd7zXZ\x00"}
_DECODE_ERRORS = (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError, MemoryError,
                  RuntimeError)  # lz4.frame raises RuntimeError on corrupt frames


def lz4_available() -> bool:
    try:
        import lz4.frame  # noqa: F401
    except ImportError:
        return False
    return True


class _Decompressor(Protocol):
    """What bz2, lzma and lz4.frame decompressors share."""

    @property
    def needs_input(self) -> bool: ...
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Decoder:
    """One codec behind one interface: feed compressed bytes, pull at most ``n`` bytes out."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._pending = b""  # input not yet consumed (stored data, zlib tail, lzma-zip header)
        self._zlib: zlib._Decompress | None = None
        self._lib: _Decompressor | None = None
        self.eof = False
        self._more = False  # zlib only: output may be held back without new input
        if codec in ("deflate", "gzip", "zlib"):
            self._zlib = zlib.decompressobj({"deflate": -15, "gzip": 31, "zlib": 15}[codec])
        elif codec in ("bzip2", "bzip2-stream"):
            self._lib = bz2.BZ2Decompressor()
        elif codec == "xz":
            self._lib = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT)
        elif codec == "lzma-alone":
            self._lib = lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT)
        elif codec == "lz4-frame":
            import lz4.frame  # optional (bastion[formats]); only asked for when importable

            self._lib = lz4.frame.LZ4FrameDecompressor()

    @property
    def needs_input(self) -> bool:
        if self.eof:
            return False
        if self._lib is not None:
            return self._lib.needs_input
        if self.codec == "lzma-zip":  # still gathering the properties header
            return True
        return not self._pending and not self._more

    @property
    def unused(self) -> bytes:
        """Input after the end of the stream (the next stream of a multi-stream file)."""
        if self._zlib is not None:
            return self._zlib.unused_data + self._pending
        if self._lib is not None:
            return self._lib.unused_data
        return self._pending

    def pull(self, data: bytes, n: int) -> bytes:
        """Decode up to ``n`` bytes, given ``data`` (new input, may be empty)."""
        if self.codec == "stored":
            buf = self._pending + data if self._pending else data
            self._pending = buf[n:]
            return buf[:n]
        if self.codec == "lzma-zip" and self._lib is None:
            self._pending += data
            self._lib = _zip_lzma(self._pending)
            if self._lib is None:
                return b""
            data, self._pending = self._pending[4 + 5:], b""
        if self._zlib is not None:
            out = self._zlib.decompress(self._pending + data, n)
            self.eof = self._zlib.eof
            # After the end, zlib reports the rest both as tail and as unused_data.
            self._pending = b"" if self.eof else self._zlib.unconsumed_tail
            self._more = len(out) == n  # zlib may hold output back once ``n`` is reached
            return out
        assert self._lib is not None
        out = self._lib.decompress(data, n)
        self.eof = self._lib.eof
        return out


def _zip_lzma(header: bytes) -> lzma.LZMADecompressor | None:
    """Zip's LZMA (method 14): 2 version bytes, 2-byte property size, 5 property bytes."""
    if len(header) < 9:
        return None
    if int.from_bytes(header[2:4], "little") != 5:
        raise ValueError("bad LZMA properties size in zip member")
    props, dict_size = header[4], int.from_bytes(header[5:9], "little")
    if props >= 9 * 5 * 5:
        raise ValueError("bad LZMA properties byte")
    if dict_size > MAX_LZMA_DICT:
        raise ValueError(f"LZMA dictionary of {dict_size} bytes is over the limit")
    lc, rest = props % 9, props // 9
    lp, pb = rest % 5, rest // 5
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp,
                "pb": pb}]
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)


class DecodedStream(io.RawIOBase):
    """The decoded bytes of ``source[start:start+length]``, bounded; see the module docstring.

    ``max_output`` caps the bytes produced; ``max_ratio`` caps produced / consumed (after
    :data:`RATIO_FLOOR`); ``expected_size`` (a zip's declared size) ends the stream there,
    like CPython's zipfile, and :attr:`overrun` says whether more data followed. The source
    is shared: the stream seeks it before each read, so other readers may use it in between.
    """

    def __init__(self, source: IO[bytes], codec: Codec, *, start: int = 0,
                 length: int | None = None, max_output: int, max_ratio: int | None = None,
                 expected_size: int | None = None, expected_crc: int | None = None,
                 close_source: bool = False) -> None:
        super().__init__()
        self._source, self.codec, self._start = source, codec, start
        self._length = length
        self.max_output, self.max_ratio = max_output, max_ratio
        self.expected_size, self.expected_crc = expected_size, expected_crc
        self._close_source = close_source
        #: Why the stream stopped early: ``"size"`` or ``"ratio"`` (sticky across restarts).
        self.limit_hit: str | None = None
        #: Why decoding failed: corrupt or truncated data (sticky).
        self.error: str | None = None
        #: More data than ``expected_size`` was there (a lying zip header).
        self.overrun = False
        #: Bytes that are not another stream followed the compressed stream.
        self.trailing = False
        #: Whether the CRC-32 matched ``expected_crc``; None until read to the end in one pass.
        self.crc_ok: bool | None = None
        #: The decoded size, once the end was reached naturally.
        self.size: int | None = None
        self._restarts = 0
        self._reset()

    def _reset(self) -> None:
        self._decoder = _Decoder(self.codec)
        self._in = 0  # compressed bytes read from the source
        self._pos = 0  # decoded bytes produced
        self._crc: int | None = 0
        self._done = False

    # -- io.RawIOBase ------------------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._measure()
        if offset < 0:
            raise ValueError("negative seek position")
        if self.codec == "stored":
            self._reset()  # stored data seeks directly; the CRC is not checked after a jump
            self._crc = None
            self._in = self._pos = min(offset, self._stored_size())
            return self._pos
        if offset < self._pos:
            self._restarts += 1
            if self._restarts > MAX_RESTARTS:
                self._fail(f"more than {MAX_RESTARTS} backward seeks in compressed data")
                return self._pos
            self._reset()
        while self._pos < offset and self._read(min(CHUNK, offset - self._pos)):
            pass
        return self._pos

    def close(self) -> None:
        if not self.closed and self._close_source:
            self._source.close()
        super().close()

    # -- decoding ----------------------------------------------------------------------------

    def _span(self) -> int:
        return self._length if self._length is not None else 1 << 62

    def _stored_size(self) -> int:
        sizes = [self._span(), self.max_output]
        return min(sizes if self.expected_size is None else [*sizes, self.expected_size])

    def _measure(self) -> int:
        if self.codec == "stored" and self.size is None:
            return self._stored_size()
        if self.size is None:
            here = self._pos
            while self._read(CHUNK):
                pass
            end = self._pos
            self.seek(here)
            return end
        return self.size

    def _input(self) -> bytes:
        want = min(CHUNK, self._span() - self._in)
        if want <= 0:
            return b""
        self._source.seek(self._start + self._in)
        data = self._source.read(want)
        self._in += len(data)
        return data

    def _read(self, n: int) -> bytes:
        stalls = 0
        while not self._done and n > 0:
            stalls += 1
            if stalls > MAX_STALLS:
                self._fail("the decoder makes no progress")
                return b""
            room = self.max_output - self._pos
            if self.expected_size is not None:
                room = min(room, self.expected_size - self._pos)
            if room <= 0:
                self._at_cap()
                return b""
            try:
                out = self._step(min(n, room))
            except _DECODE_ERRORS as exc:
                self._fail(f"{type(exc).__name__}: {exc}")
                return b""
            if out:
                self._produced(out)
                return out
        return b""

    def _step(self, n: int) -> bytes:
        """One decode step: output, or b"" with the stream finished or fed."""
        decoder = self._decoder
        if decoder.eof:
            self._next_stream()
            return b""
        data = self._input() if decoder.needs_input else b""
        if decoder.needs_input and not data:
            if self.codec in ("stored", "lzma-zip"):  # raw LZMA may lack an end marker
                self._finish()
            else:
                self._fail("compressed data ends early (truncated)")
            return b""
        out = decoder.pull(data, n)
        if not out and self.codec == "stored" and not data:
            self._finish()
        return out

    def _produced(self, out: bytes) -> None:
        self._pos += len(out)
        if self._crc is not None:
            self._crc = zlib.crc32(out, self._crc)
        ratio = self.max_ratio
        if ratio is not None and self._pos > RATIO_FLOOR and self._pos > ratio * max(self._in, 1):
            self.limit_hit = self.limit_hit or "ratio"
            self._done = True

    def _next_stream(self) -> None:
        """At the end of one compressed stream: start the next one, or finish."""
        magic = _MULTI.get(self.codec)
        rest = self._decoder.unused
        if magic is not None:
            rest += self._input() if len(rest) < 8 else b""
            if rest.startswith(magic):
                self._decoder = _Decoder(self.codec)
                self._in -= len(rest)  # the next stream's start is read again from the source
                return
            if rest.strip(b"\0") or self._input().strip(b"\0"):
                self.trailing = True
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self.expected_size is not None and self._pos < self.expected_size:
            self._fail(f"data ends after {self._pos} of {self.expected_size} declared bytes")
            return
        self.size = self._pos
        if self.expected_crc is not None and self._crc is not None:
            self.crc_ok = (self._crc & 0xFFFFFFFF) == self.expected_crc

    def _at_cap(self) -> None:
        """Output reached the cap or the declared size: is there more behind it?"""
        self._done = True
        try:
            more = self._probe()
        except _DECODE_ERRORS:
            more = False
        if self.expected_size is not None and self._pos >= self.expected_size:
            self.overrun = self.overrun or more
            self.size = self._pos
            if self.expected_crc is not None and self._crc is not None:
                self.crc_ok = (self._crc & 0xFFFFFFFF) == self.expected_crc
        elif more:
            self.limit_hit = self.limit_hit or "size"
        else:
            self.size = self._pos

    def _probe(self) -> bool:
        for _ in range(64):  # a few steps: headers and empty blocks produce nothing
            decoder = self._decoder
            if decoder.eof:  # another stream may follow (gzip members), or padding
                return self.codec in _MULTI and bool(
                    decoder.unused.strip(b"\0") or self._input().strip(b"\0"))
            data = self._input() if decoder.needs_input else b""
            if decoder.needs_input and not data:
                return False
            if decoder.pull(data, 1):
                return True
        return False

    def _fail(self, message: str) -> None:
        self.error = self.error or message
        self._done = True


class BoundedReader(io.BufferedReader):
    """A buffered :class:`DecodedStream`: fast small reads; ``.decoded`` holds the verdicts."""

    def __init__(self, raw: DecodedStream) -> None:
        super().__init__(raw, CHUNK)
        self.decoded = raw


def drain(stream: IO[bytes], keep: int) -> tuple[bytes, int]:
    """Read a bounded stream to its end; keep the first ``keep`` bytes, count them all."""
    kept = bytearray()
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if len(kept) < keep:
            kept += chunk[: keep - len(kept)]
    return bytes(kept), total
