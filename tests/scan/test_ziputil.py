"""The bounded zip reader: real archives from zipfile, and hand-built hostile ones.

Each hostile test names the reader disagreement or bomb technique it pins. Every test runs
under a time and memory bound (``_bounded``): a hostile zip must never cost more.
"""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Iterator

import pytest

from bastion.policy import Limits
from bastion.scan.boundedio import (
    MAX_RESTARTS,
    RATIO_FLOOR,
    BoundedReader,
    Codec,
    DecodedStream,
)
from bastion.scan.ziputil import (
    EOCD,
    Kind,
    NameIssue,
    ZipArchive,
    ZipFormatError,
    name_issues,
    open_member,
    read_member,
    read_zip,
)

LIMITS = Limits()
TEXT = b"the quick brown fox jumps over the lazy dog\n" * 500


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """No test may take more than 20 s or allocate more than 96 MiB at its peak."""
    tracemalloc.start()
    start = time.monotonic()
    yield
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - start < 20
    assert peak < 96 << 20, f"peak {peak >> 20} MiB"


def make_zip(files: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED,
             comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names, which we want
        with zipfile.ZipFile(buf, "w", method) as archive:
            for name, data in files:
                archive.writestr(name, data)
            archive.comment = comment
    return buf.getvalue()


def parse(data: bytes, **kwargs: int) -> ZipArchive:
    return read_zip(io.BytesIO(data), **kwargs)


def kinds(archive: ZipArchive) -> set[Kind]:
    return {d.kind for d in archive.discrepancies}


def central_offsets(data: bytes) -> list[int]:
    """Offsets of central directory entries (test archives hold no such bytes in data)."""
    out, pos = [], data.find(b"PK\x01\x02")
    while pos >= 0:
        out.append(pos)
        pos = data.find(b"PK\x01\x02", pos + 1)
    return out


def patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def deflate_zeros(size: int) -> bytes:
    """Raw deflate of ``size`` zero bytes, made in 1 MiB steps to keep the test's memory low."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, parts = bytes(1 << 20), []
    for _ in range(size >> 20):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    return b"".join(parts)


def raw_zip(entries: list[tuple[str, bytes, int, int, int]], *, lie_size: int | None = None
            ) -> bytes:
    """A zip of (name, compressed data, method, crc, size) written byte by byte."""
    local, central = bytearray(), bytearray()
    for name, data, method, crc, size in entries:
        raw = name.encode()
        central += struct.pack("<4sHHHHHHLLLHHHHHLL", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                               crc, len(data), size if lie_size is None else lie_size,
                               len(raw), 0, 0, 0, 0, 0, len(local)) + raw
        local += struct.pack("<4sHHHHHLLLHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                             len(data), size, len(raw), 0) + raw + data
    eocd = EOCD.pack(b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central),
                     len(local), 0)
    return bytes(local + central + eocd)


# -- reading real archives ---------------------------------------------------------------------


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                    zipfile.ZIP_LZMA])
def test_real_zip_members_and_content(method: int) -> None:
    data = make_zip([("a/model.bin", TEXT), ("b.txt", b"x" * 10), ("empty", b"")], method)
    archive = parse(data)
    assert [m.name for m in archive.members] == ["a/model.bin", "b.txt", "empty"]
    assert archive.discrepancies == ()
    with zipfile.ZipFile(io.BytesIO(data)) as reference:
        for member, info in zip(archive.members, reference.infolist(), strict=True):
            assert member.data_offset == info.header_offset + 30 + len(info.filename) + len(
                info.extra)
            assert (member.compressed_size, member.uncompressed_size, member.crc) == (
                info.compress_size, info.file_size, info.CRC)
            result = read_member(io.BytesIO(data), member, 1 << 20, limits=LIMITS)
            assert result.data == reference.read(info)
            assert result.complete
            assert result.crc_ok is True
            assert not result.overrun


def test_data_descriptors_from_a_non_seekable_writer_are_clean() -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk: object) -> int:
            self.data += chunk  # type: ignore[operator]
            return len(chunk)  # type: ignore[arg-type]

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a", TEXT)
        archive.writestr("b", b"x")
    data = bytes(sink.data)
    archive_ = parse(data)
    assert all(m.flags & 0x8 for m in archive_.members)
    assert archive_.discrepancies == ()
    assert read_member(io.BytesIO(data), archive_.members[0], 1 << 20, limits=LIMITS).data == TEXT


@pytest.fixture(scope="module")
def torch_checkpoint() -> bytes:
    """Made once, outside the per-test bounds: importing torch is slow."""
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"weight": torch.arange(100.0)}, buf)
    return buf.getvalue()


@pytest.mark.torch
def test_pytorch_checkpoint_parses_without_discrepancies(torch_checkpoint: bytes) -> None:
    """torch.save pads local extra fields for alignment; that must not look hostile."""
    data = torch_checkpoint
    archive = parse(data)
    assert archive.discrepancies == ()
    with zipfile.ZipFile(io.BytesIO(data)) as reference:
        for member in archive.members:
            got = read_member(io.BytesIO(data), member, 1 << 20, limits=LIMITS)
            assert got.data == reference.read(member.name)


def test_streaming_member_reads_in_small_steps_and_seeks_back() -> None:
    data = make_zip([("big.bin", TEXT * 20)])
    member = parse(data).members[0]
    with open_member(io.BytesIO(data), member, limits=LIMITS) as stream:
        assert isinstance(stream, BoundedReader)
        first = stream.read(7)
        stream.seek(100_000)
        middle = stream.read(50)
        stream.seek(3)  # backwards: decoding starts over
        again = stream.read(4)
        assert stream.seek(0, io.SEEK_END) == len(TEXT) * 20
    whole = TEXT * 20
    assert (first, middle, again) == (whole[:7], whole[100_000:100_050], whole[3:7])


def test_zip64_end_record_is_followed() -> None:
    """A ZIP64 EOCD record and locator before a saturated classic EOCD (CPython's layout)."""
    data = make_zip([("a", b"hello"), ("b", b"world")])
    eocd = data.rfind(b"PK\x05\x06")
    _, _, _, _, count, cd_size, cd_offset, _ = EOCD.unpack_from(data, eocd)
    record = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size,
                         cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    classic = EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    archive = parse(data[:eocd] + record + locator + classic)
    assert archive.zip64
    assert [m.name for m in archive.members] == ["a", "b"]
    assert archive.discrepancies == ()


def test_zip64_saturated_end_record_without_zip64_record_is_an_error() -> None:
    data = make_zip([("a", b"hello")])
    eocd = data.rfind(b"PK\x05\x06")
    broken = data[:eocd] + EOCD.pack(b"PK\x05\x06", 0, 0, 1, 1, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with pytest.raises(ZipFormatError):
        parse(broken)


# -- bombs -------------------------------------------------------------------------------------


def test_ratio_bomb_stops_early_with_a_flag() -> None:
    """Technique: a small member that inflates 1000:1 (classic zip bomb, CWE-409)."""
    kernel = deflate_zeros(64 << 20)
    data = raw_zip([("zeros", kernel, 8, 0, 64 << 20)])
    result = read_member(io.BytesIO(data), parse(data).members[0], 1 << 30, limits=LIMITS)
    assert result.limit_hit == "ratio"
    assert RATIO_FLOOR < len(result.data) < 32 << 20  # stopped long before 64 MiB


def test_size_cap_returns_a_prefix_with_a_flag() -> None:
    data = make_zip([("text", TEXT)])
    result = read_member(io.BytesIO(data), parse(data).members[0], 1000, limits=LIMITS)
    assert result.data == TEXT[:1000]
    assert result.limit_hit == "size"
    assert not result.complete


def test_overlapping_entries_bomb_is_reported() -> None:
    """Technique: many central entries sharing one compressed kernel (Fifield's overlap)."""
    kernel = deflate_zeros(4 << 20)
    crc = zlib.crc32(bytes(4 << 20))
    single = raw_zip([("k", kernel, 8, crc, 4 << 20)])
    cd = central_offsets(single)[0]
    entry = single[cd: single.rfind(b"PK\x05\x06")]
    entries = b"".join(entry for _ in range(50))  # same name and offset: one local header
    local = single[:cd]
    eocd = EOCD.pack(b"PK\x05\x06", 0, 0, 50, 50, len(entries), len(local), 0)
    archive = parse(local + entries + eocd)
    assert len(archive.members) == 50
    assert Kind.OVERLAP in kinds(archive)
    overlap = [d for d in archive.discrepancies if d.kind is Kind.OVERLAP]
    assert any("more" in d.message for d in overlap)  # listed up to a cap, then counted


# -- parser differentials ----------------------------------------------------------------------


def test_duplicate_names_are_reported() -> None:
    """Technique: two entries named data.pkl; CPython reads the last, others the first."""
    archive = parse(make_zip([("data.pkl", b"benign"), ("data.pkl", b"evil")]))
    dup = [d for d in archive.discrepancies if d.kind is Kind.DUPLICATE_NAME]
    assert len(dup) == 1
    assert dup[0].member == "data.pkl"


def test_local_central_name_mismatch_is_reported_and_member_still_readable() -> None:
    """Technique: zipfile refuses the member, torch.load does not check the local name."""
    data = make_zip([("archive/data.pkl", b"payload")], zipfile.ZIP_STORED)
    data = data.replace(b"archive/data.pkl", b"archive/data.pkX", 1)  # the local header only
    with pytest.raises(zipfile.BadZipFile), zipfile.ZipFile(io.BytesIO(data)) as reference:
        reference.read("archive/data.pkl")
    archive = parse(data)
    assert Kind.NAME_MISMATCH in kinds(archive)
    assert read_member(io.BytesIO(data), archive.members[0], 100, limits=LIMITS).data == b"payload"


def test_crc_mismatch_is_read_like_pytorch_and_flagged() -> None:
    """Technique: a wrong CRC; CPython raises, PyTorch turned CRC checks off."""
    data = make_zip([("data.pkl", b"payload")], zipfile.ZIP_STORED)
    for offset in (14, central_offsets(data)[0] + 16):  # local, then central CRC field
        data = patch(data, offset, "<L", 0xDEADBEEF)
    result = read_member(io.BytesIO(data), parse(data).members[0], 100, limits=LIMITS)
    assert result.data == b"payload"
    assert result.crc_ok is False


def test_declared_size_smaller_than_data_is_an_overrun() -> None:
    """Technique: a central size that lies; CPython stops at it, the rest is hidden."""
    body = TEXT
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = comp.compress(body) + comp.flush()
    data = raw_zip([("m", deflated, 8, zlib.crc32(body[:100]), len(body))], lie_size=100)
    result = read_member(io.BytesIO(data), parse(data).members[0], 1 << 20, limits=LIMITS)
    assert result.data == body[:100]
    assert result.overrun


def test_concatenated_zips_show_two_end_records_and_both_views() -> None:
    """Technique: zip A + zip B; CPython and torch read B, first-EOCD readers read A."""
    first = make_zip([("evil.pkl", b"payload")])
    second = make_zip([("model.bin", TEXT)])
    archive = parse(first + second)
    assert [m.name for m in archive.members] == ["model.bin"]
    assert {Kind.MULTIPLE_EOCD, Kind.PREPENDED_DATA, Kind.HIDDEN_ENTRY} <= kinds(archive)
    assert archive.prefix == len(first)
    other = parse(first + second, eocd_offset=archive.other_eocds[0])
    assert [m.name for m in other.members] == ["evil.pkl"]
    assert read_member(io.BytesIO(first + second), archive.members[0], 1 << 20,
                       limits=LIMITS).data == TEXT


def test_prepended_data_shifts_offsets_like_cpython() -> None:
    """Technique: a polyglot, a shell script in front of a zip (self-extractor layout)."""
    data = b"#!/bin/sh\nexec python -c 'print(1)'\n" + make_zip([("a", b"content")])
    archive = parse(data)
    assert kinds(archive) == {Kind.PREPENDED_DATA}
    assert read_member(io.BytesIO(data), archive.members[0], 100, limits=LIMITS).data == b"content"


def test_gap_with_a_local_header_is_a_hidden_entry() -> None:
    """Technique: a local entry that no central record lists (seen by streaming readers)."""
    hidden = make_zip([("hidden.pkl", b"payload")])
    hidden_local = hidden[: central_offsets(hidden)[0]]
    visible = raw_zip([("a", b"aaaa", 0, zlib.crc32(b"aaaa"), 4)])
    cd = central_offsets(visible)[0]
    eocd = visible.rfind(b"PK\x05\x06")
    cd_size = eocd - cd
    data = visible[:cd] + hidden_local + visible[cd:eocd] + EOCD.pack(
        b"PK\x05\x06", 0, 0, 1, 1, cd_size, cd + len(hidden_local), 0)
    archive = parse(data)
    assert {Kind.EMBEDDED_DATA, Kind.HIDDEN_ENTRY} <= kinds(archive)
    assert [m.name for m in archive.members] == ["a"]


def test_trailing_data_is_reported() -> None:
    archive = parse(make_zip([("a", b"x")]) + b"appended payload")
    assert kinds(archive) == {Kind.TRAILING_DATA}


def test_fake_end_record_in_the_comment_hides_members_from_cpython() -> None:
    """Technique: an empty EOCD stuffed in the comment; CPython's rfind takes it (no members),
    readers that check the comment length take the real one. Both views are exposed."""
    data = make_zip([("a", b"x")], comment=b"note " + b"PK\x05\x06" + bytes(18))
    with zipfile.ZipFile(io.BytesIO(data)) as reference:
        assert reference.namelist() == []
    archive = parse(data)
    assert archive.members == ()
    assert Kind.MULTIPLE_EOCD in kinds(archive)
    other = parse(data, eocd_offset=archive.other_eocds[0])
    assert [m.name for m in other.members] == ["a"]


def test_garbage_end_records_are_skipped_until_one_parses() -> None:
    data = make_zip([("a", b"x")])
    garbage = b"PK\x05\x06" + b"\xff" * 18  # points far past the end: does not parse
    archive = parse(data[:-2] + struct.pack("<H", 22) + garbage)
    assert [m.name for m in archive.members] == ["a"]
    assert Kind.MULTIPLE_EOCD in kinds(archive)


def test_nested_stored_zip_is_not_a_second_end_record() -> None:
    inner = make_zip([("x", b"y")])
    archive = parse(make_zip([("inner.zip", inner)], zipfile.ZIP_STORED))
    assert archive.discrepancies == ()
    assert archive.other_eocds == ()


def test_entry_count_mismatch_is_reported() -> None:
    data = make_zip([("a", b"x"), ("b", b"y")])
    eocd = data.rfind(b"PK\x05\x06")
    archive = parse(patch(patch(data, eocd + 8, "<H", 3), eocd + 10, "<H", 3))
    assert Kind.COUNT_MISMATCH in kinds(archive)
    assert len(archive.members) == 2  # walked by size, as CPython does


def test_member_limit_stops_reading_the_directory() -> None:
    archive = parse(make_zip([(f"f{i}", b"") for i in range(5)]), max_members=2)
    assert len(archive.members) == 2
    assert Kind.MEMBER_LIMIT in kinds(archive)


# -- members that cannot be read ---------------------------------------------------------------


def test_encrypted_member_is_reported_and_refused() -> None:
    data = make_zip([("secret.pkl", b"payload")], zipfile.ZIP_STORED)
    for offset in (6, central_offsets(data)[0] + 8):  # general purpose flags, bit 0
        data = patch(data, offset, "<H", 1)
    archive = parse(data)
    assert Kind.ENCRYPTED in kinds(archive)
    assert archive.members[0].encrypted
    with pytest.raises(ZipFormatError, match="encrypted"):
        open_member(io.BytesIO(data), archive.members[0], limits=LIMITS)


def test_unknown_method_is_reported_and_refused() -> None:
    data = make_zip([("m.pkl", b"payload")], zipfile.ZIP_STORED)
    for offset in (8, central_offsets(data)[0] + 10):
        data = patch(data, offset, "<H", 93)  # Zstandard
    archive = parse(data)
    assert Kind.UNKNOWN_METHOD in kinds(archive)
    with pytest.raises(ZipFormatError, match="method 93"):
        open_member(io.BytesIO(data), archive.members[0], limits=LIMITS)


def test_bad_local_header_offset_is_reported() -> None:
    data = make_zip([("a", b"x")])
    archive = parse(patch(data, central_offsets(data)[0] + 42, "<L", 5))
    assert Kind.BAD_LOCAL_HEADER in kinds(archive)
    assert archive.members[0].data_offset is None


def test_member_running_past_the_end_is_truncated() -> None:
    data = make_zip([("a", TEXT)])
    archive = parse(patch(data, central_offsets(data)[0] + 20, "<L", 1 << 30))
    assert Kind.TRUNCATED in kinds(archive)


def test_corrupt_deflate_data_is_an_error_not_an_exception() -> None:
    data = bytearray(make_zip([("a", TEXT)]))
    data[40:60] = b"\xff" * 20
    result = read_member(io.BytesIO(bytes(data)), parse(bytes(data)).members[0], 1 << 20,
                         limits=LIMITS)
    assert result.error is not None
    assert not result.complete


@pytest.mark.parametrize("cut", [10, 200, -5, -30])
def test_truncated_archive_is_a_format_error(cut: int) -> None:
    data = make_zip([("a", TEXT), ("b", TEXT)])
    with pytest.raises(ZipFormatError):
        parse(data[:cut])


def test_truncated_stored_member_data_reports_an_error() -> None:
    data = make_zip([("a", TEXT)], zipfile.ZIP_STORED)
    member = parse(data).members[0]
    result = read_member(io.BytesIO(data[:500]), member, 1 << 20, limits=LIMITS)
    assert result.error is not None
    assert len(result.data) < len(TEXT)


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "issue"), [
    ("../../etc/cron.d/x", NameIssue.PARENT),
    ("a/../../b", NameIssue.PARENT),
    ("..\\..\\windows\\system32\\x.dll", NameIssue.PARENT),
    ("/etc/passwd", NameIssue.ABSOLUTE),
    ("\\\\server\\share\\x", NameIssue.ABSOLUTE),
    ("C:\\Windows\\x.dll", NameIssue.DRIVE),
    ("C:relative", NameIssue.DRIVE),
    ("model.pkl\x00.txt", NameIssue.NUL),
    ("dir\\file", NameIssue.BACKSLASH),
    ("a\x1b[31m", NameIssue.CONTROL),
])
def test_unsafe_names(name: str, issue: NameIssue) -> None:
    """Technique: zip-slip (CWE-22) and names tools disagree on."""
    assert issue in name_issues(name)


@pytest.mark.parametrize("name", ["model/data.pkl", "a..b/c", "x.tar.gz", "dir/", "über.bin"])
def test_safe_names(name: str) -> None:
    assert name_issues(name) == ()


def test_unsafe_names_are_discrepancies_capped_per_kind() -> None:
    archive = parse(make_zip([(f"../{i}", b"") for i in range(40)]))
    unsafe = [d for d in archive.discrepancies if d.kind is Kind.UNSAFE_NAME]
    assert len(unsafe) == 17  # 16 listed, one that counts the rest
    assert NameIssue.PARENT in unsafe[0].detail
    assert "24 more" in unsafe[-1].message


# -- the decoding stream -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["deflate", "gzip", "bzip2-stream", "xz", "lzma-alone",
                                   "lzma-zip", "bzip2"])
def test_decoded_stream_reports_garbage_without_raising(codec: Codec) -> None:
    raw = DecodedStream(io.BytesIO(b"\x00\xff" * 5000), codec, max_output=1 << 20)
    with BoundedReader(raw) as stream:
        assert len(stream.read()) < 10_000
    assert raw.error is not None


def test_backward_seeks_in_compressed_data_are_bounded() -> None:
    """A hostile layout must not make a compressed stream decode from the start forever."""
    data = zlib.compress(TEXT * 10, wbits=31)
    raw = DecodedStream(io.BytesIO(data), "gzip", max_output=1 << 20)
    with BoundedReader(raw) as stream:
        for _ in range(MAX_RESTARTS + 5):
            stream.seek(len(TEXT) * 5)
            stream.read(1)
            stream.seek(0)
    assert raw.error is not None
    assert "backward seeks" in raw.error
