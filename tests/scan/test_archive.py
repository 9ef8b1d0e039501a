"""The archive analyzer: members of zip, tar, gzip, bzip2, xz and lzma go back to the analyzers.

A tiny test analyzer (``Mark``) claims content that starts with ``b"MARK"`` and reports it,
so each test can prove *that* a member was dispatched and *where* (the member chain in the
finding's location). Hostile archives are built by hand; each test names the technique.
Every test runs under a time and memory bound (``_bounded``).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Category, Finding, Location, Severity
from bastion.policy import Limits, Policy
from bastion.rules import Rule
from bastion.scan import archive as archive_mod
from bastion.scan.archive import RULES, ArchiveAnalyzer, detect, inner_name

MARK_RULE = Rule(id="TEST-MARK", title="marked content", severity=Severity.HIGH,
                 category=Category.CODE_EXECUTION, description="test content reached")


class Mark:
    """Claims content starting with MARK; reports where it was found and how deep."""

    name = "mark"
    capability = "mark"
    rules = (MARK_RULE,)

    def claims(self, target: Target) -> bool:
        return target.head.startswith(b"MARK")

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        with target.open() as stream:
            body = stream.read()
        yield MARK_RULE.finding(target.location, f"depth {target.depth}",
                                evidence=body[:40].decode("latin-1"),
                                properties={"size": len(body), "crc": zlib.crc32(body)})


@pytest.fixture(autouse=True)
def _bounded() -> Iterator[None]:
    """No test may take more than 20 s or allocate more than 128 MiB at its peak."""
    tracemalloc.start()
    start = time.monotonic()
    yield
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - start < 20
    assert peak < 128 << 20, f"peak {peak >> 20} MiB"


def scan(data: bytes, name: str = "file.bin", **limits: int) -> list[Finding]:
    policy = Policy(limits=Limits(**limits))
    ctx = Context(policy=policy, registry=Registry([Mark(), ArchiveAnalyzer()]))
    target = Target.from_bytes(data, Location(path=name))
    return [f for analyzer in ctx.registry.claimants(target)
            for f in analyzer.analyze(target, ctx)]


def ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def marks(findings: list[Finding]) -> list[tuple[str, ...]]:
    return sorted(f.location.members for f in findings if f.rule_id == "TEST-MARK")


def make_zip(files: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are a fixture here
        with zipfile.ZipFile(buf, "w", method) as archive:
            for name, data in files:
                archive.writestr(name, data)
    return buf.getvalue()


def make_tar(files: list[tuple[str, bytes]], *, links: list[tuple[str, str, bytes]] = (),
             fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
    return buf.getvalue()


def deflate_zip_bomb(size: int, extra: list[tuple[str, bytes]] = ()) -> bytes:
    """A zip whose first member inflates ``size`` zero bytes from ~1/1000 of that."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                member.write(chunk)
        for name, data in extra:
            archive.writestr(name, data)
    return buf.getvalue()


# -- dispatch ----------------------------------------------------------------------------------


def test_zip_members_are_dispatched_with_their_names() -> None:
    found = scan(make_zip([("weights/evil.bin", b"MARK one"), ("notes.txt", b"hello")]),
                 "model.zip")
    assert marks(found) == [("weights/evil.bin",)]
    assert ids(found) == {"TEST-MARK"}


def test_pickle_in_zip_in_tar_gz_keeps_the_member_chain(tmp_path: Path) -> None:
    """A member three containers deep is found through the real engine."""
    inner = make_zip([("archive/data.pkl", b"MARK payload")])
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(gzip.compress(make_tar([("models/inner.zip", inner)])))
    report = scan_paths([path], registry=Registry([Mark(), ArchiveAnalyzer()]))
    (finding,) = [f for f in report.findings if f.rule_id == "TEST-MARK"]
    assert finding.location.members == ("bundle.tar", "models/inner.zip", "archive/data.pkl")
    assert finding.message == "depth 3"
    assert [f.rule_id for f in report.findings] == ["TEST-MARK"]


@pytest.mark.parametrize(("compress", "name", "member"), [
    (gzip.compress, "data.pkl.gz", "data.pkl"),
    (bz2.compress, "data.pkl.bz2", "data.pkl"),
    (lzma.compress, "model.txz", "model.tar"),
    (lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), "x.lzma", "x"),
    (gzip.compress, "no-suffix", "<decompressed>"),
])
def test_single_stream_compression_is_decompressed_and_dispatched(
        compress: object, name: str, member: str) -> None:
    data = compress(b"MARK inside")  # type: ignore[operator]
    assert marks(scan(data, name)) == [(member,)]


def test_concatenated_gzip_members_are_one_stream() -> None:
    data = gzip.compress(b"MARK first ") + gzip.compress(b"second")
    (finding,) = [f for f in scan(data, "a.gz") if f.rule_id == "TEST-MARK"]
    assert finding.evidence == "MARK first second"


@pytest.mark.parametrize("kind", ["zip-deflate", "zip-stored", "tar", "gzip", "tar.gz",
                                  "zip-in-zip"])
def test_large_members_are_streamed_not_held(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Members over the in-memory size go on as bounded, re-reading (seekable) streams."""
    monkeypatch.setattr(archive_mod, "IN_MEMORY", 1024)
    body = b"MARK" + bytes(range(256)) * 64
    filler = [(f"pad{i}", bytes(range(256)) * 4) for i in range(4)]
    data = {
        "zip-deflate": lambda: make_zip([("big.bin", body)]),
        "zip-stored": lambda: make_zip([("big.bin", body)], zipfile.ZIP_STORED),
        "tar": lambda: make_tar([("big.bin", body)]),
        "gzip": lambda: gzip.compress(body),
        "tar.gz": lambda: gzip.compress(make_tar([*filler, ("big.bin", body)])),
        "zip-in-zip": lambda: make_zip([("inner.zip", make_zip([*filler, ("big.bin", body)]))]),
    }[kind]()
    found = [f for f in scan(data, "big.bin.gz") if f.rule_id == "TEST-MARK"]
    assert len(found) == 1
    assert found[0].properties == {"size": len(body), "crc": zlib.crc32(body)}


def test_clean_archives_give_no_findings() -> None:
    zipped = make_zip([("a.txt", b"hello"), ("dir/", b""), ("b.json", b"{}")])
    tarred = make_tar([("a.txt", b"hello")], links=[("dir/link", "../a.txt", tarfile.SYMTYPE)])
    assert scan(zipped, "a.zip") == []
    assert scan(gzip.compress(tarred), "a.tgz") == []


# -- bombs and limits --------------------------------------------------------------------------


def test_zip_ratio_bomb_stops_the_archive() -> None:
    """Technique: a member inflating 1000:1 (CWE-409); the member after it is not read."""
    data = deflate_zip_bomb(48 << 20, extra=[("after.bin", b"MARK late")])
    found = scan(data, "bomb.zip")
    assert "ARCHIVE-BOMB" in ids(found)
    assert marks(found) == []


def test_bomb_in_a_nested_zip_stops_the_outer_archive_too() -> None:
    """Technique: 42.zip-style nesting; one bomb anywhere stops the whole tree."""
    inner = deflate_zip_bomb(32 << 20)
    outer = make_zip([("a/inner.zip", inner), ("b/late.bin", b"MARK late")], zipfile.ZIP_STORED)
    found = scan(outer, "outer.zip")
    (bomb,) = [f for f in found if f.rule_id == "ARCHIVE-BOMB"]
    assert bomb.location.members == ("a/inner.zip", "zeros.bin")
    assert marks(found) == []


def test_gzip_bomb_is_reported() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = b"".join(comp.compress(bytes(1 << 20)) for _ in range(48)) + comp.flush()
    found = scan(data, "zeros.gz")
    assert ids(found) == {"ARCHIVE-BOMB"}


def test_overlapping_zip_entries_are_a_bomb() -> None:
    """Technique: Fifield's overlap, many central entries sharing one local header."""
    single = make_zip([("k", bytes(1 << 20))])
    cd, eocd = single.find(b"PK\x01\x02"), single.rfind(b"PK\x05\x06")
    entries = single[cd:eocd] * 30
    data = single[:cd] + entries + struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 30, 30,
                                               len(entries), cd, 0)
    found = scan(data, "overlap.zip")
    assert "ZIP-OVERLAP" in ids(found)
    assert "ZIP-DUPLICATE-NAME" in ids(found)


def test_nesting_deeper_than_the_limit_is_reported_not_followed() -> None:
    """Technique: a depth bomb, zip in zip in zip ... with the payload below the limit."""
    data = b"MARK bottom"
    for level in range(6):
        data = make_zip([(f"level{level}", data)])
    found = scan(data, "deep.zip", max_archive_depth=3)
    (depth,) = [f for f in found if f.rule_id == "ARCHIVE-DEPTH-EXCEEDED"]
    assert len(depth.location.members) == 3
    assert marks(found) == []


def test_depth_within_the_limit_is_followed() -> None:
    data = b"MARK bottom"
    for level in range(3):
        data = make_zip([(f"level{level}", data)])
    assert marks(scan(data, "deep.zip", max_archive_depth=3)) == [
        ("level2", "level1", "level0")]


def test_member_count_limit_is_shared_by_the_tree() -> None:
    inner = make_zip([(f"i{i}", b"x") for i in range(5)])
    outer = make_zip([("inner.zip", inner), *((f"o{i}", b"y") for i in range(5))])
    found = scan(outer, "many.zip", max_archive_members=4)
    assert "ARCHIVE-LIMIT" in ids(found)


def test_decompressed_size_limit_is_reported() -> None:
    data = make_zip([("a.bin", bytes(range(256)) * 4096)])  # 1 MiB, compresses poorly
    found = scan(data, "a.zip", max_decompressed_size=100_000)
    assert ids(found) == {"ARCHIVE-LIMIT"}


# -- names and links ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../home/user/.bashrc", "/etc/cron.d/evil",
                                  "..\\..\\startup\\evil.bat", "C:/Windows/evil.dll"])
def test_zip_slip_names_are_reported_and_still_scanned(name: str) -> None:
    """Technique: zip-slip (CWE-22); the content is still handed on."""
    found = scan(make_zip([(name, b"MARK x")]), "slip.zip")
    assert "ARCHIVE-PATH-TRAVERSAL" in ids(found)
    assert marks(found) == [(name,)]


def test_tar_slip_names_are_reported() -> None:
    found = scan(make_tar([("../../etc/profile.d/x.sh", b"MARK")]), "slip.tar")
    assert "ARCHIVE-PATH-TRAVERSAL" in ids(found)


def test_nul_in_a_zip_name_is_suspicious() -> None:
    """Technique: CPython cuts names at NUL; other tools keep the whole name."""
    data = make_zip([("model.pkl#.txt", b"data")]).replace(b"model.pkl#", b"model.pkl\x00")
    found = scan(data, "nul.zip")
    assert "ARCHIVE-SUSPICIOUS-NAME" in ids(found)


@pytest.mark.parametrize(("link", "kind"), [
    ("/etc/passwd", tarfile.SYMTYPE),
    ("../../../etc/passwd", tarfile.SYMTYPE),
    ("../outside", tarfile.LNKTYPE),
    ("/etc/shadow", tarfile.LNKTYPE),
])
def test_tar_links_out_of_the_archive_are_reported(link: str, kind: bytes) -> None:
    """Technique: a tar link to /etc/passwd (CWE-22/59); extraction follows it."""
    found = scan(make_tar([], links=[("models/config", link, kind)]), "links.tar")
    (escape,) = [f for f in found if f.rule_id == "ARCHIVE-LINK-ESCAPE"]
    assert escape.evidence == f"models/config -> {link}"


def test_tar_links_inside_the_archive_are_fine() -> None:
    found = scan(make_tar([("a/b.bin", b"x")], links=[("a/c", "b.bin", tarfile.SYMTYPE),
                                                      ("d", "a/b.bin", tarfile.LNKTYPE)]),
                 "ok.tar")
    assert found == []


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_device_and_fifo_members_are_reported(kind: bytes) -> None:
    found = scan(make_tar([], links=[("dev/thing", "", kind)]), "dev.tar")
    assert ids(found) == {"ARCHIVE-SPECIAL-MEMBER"}


# -- zip reader disagreements ------------------------------------------------------------------


def test_duplicate_zip_names_are_reported_and_both_scanned() -> None:
    """Technique: data.pkl twice; a scanner reading one and a loader reading the other."""
    found = scan(make_zip([("data.pkl", b"MARK benign"), ("data.pkl", b"MARK evil")]), "d.zip")
    assert "ZIP-DUPLICATE-NAME" in ids(found)
    evidence = sorted(f.evidence or "" for f in found if f.rule_id == "TEST-MARK")
    assert evidence == ["MARK benign", "MARK evil"]


def test_local_name_mismatch_is_reported_and_read_like_pytorch() -> None:
    data = make_zip([("archive/data.pkl", b"MARK x")], zipfile.ZIP_STORED)
    data = data.replace(b"archive/data.pkl", b"archive/data.pkX", 1)  # the local header only
    found = scan(data, "m.zip")
    assert "ZIP-NAME-MISMATCH" in ids(found)
    assert marks(found) == [("archive/data.pkl",)]


def test_concatenated_zips_scan_both_archives() -> None:
    """Technique: zip A + zip B; the payload in A is invisible to CPython and PyTorch."""
    data = make_zip([("evil.bin", b"MARK hidden")]) + make_zip([("model.bin", b"MARK shown")])
    found = scan(data, "two.zip")
    assert {"ZIP-MULTIPLE-EOCD", "ARCHIVE-HIDDEN-DATA", "ZIP-HIDDEN-ENTRY"} <= ids(found)
    assert marks(found) == [("evil.bin",), ("model.bin",)]


def test_prepended_data_is_hidden_data_and_members_are_still_found() -> None:
    """Technique: a polyglot, an executable stub in front of a (small) zip."""
    found = scan(b"MZ\x90\x00 stub of an exe" + make_zip([("a", b"MARK")]), "sfx.zip")
    assert "ARCHIVE-HIDDEN-DATA" in ids(found)
    assert marks(found) == [("a",)]


def test_trailing_data_is_hidden_data() -> None:
    found = scan(make_zip([("a", b"MARK")]) + b"trailing secret", "t.zip")
    assert "ARCHIVE-HIDDEN-DATA" in ids(found)
    assert marks(found) == [("a",)]


def test_findings_about_one_archive_are_capped_but_nested_ones_are_not() -> None:
    found = scan(make_zip([(f"../evil{i}", b"MARK") for i in range(40)]), "slip.zip")
    traversal = [f for f in found if f.rule_id == "ARCHIVE-PATH-TRAVERSAL"]
    assert len(traversal) == 17  # 16 listed by the zip reader, then one that counts the rest
    assert "24 more" in traversal[-1].message
    assert len(marks(found)) == 40


def test_tar_findings_are_capped_per_archive() -> None:
    found = scan(make_tar([(f"../evil{i}", b"MARK") for i in range(40)]), "slip.tar")
    traversal = [f for f in found if f.rule_id == "ARCHIVE-PATH-TRAVERSAL"]
    assert len(traversal) == 26
    assert traversal[-1].properties == {"omitted": 15}
    assert len(marks(found)) == 40


def test_encrypted_member_fails_closed() -> None:
    data = bytearray(make_zip([("secret.pkl", b"MARK")], zipfile.ZIP_STORED))
    struct.pack_into("<H", data, 6, 1)
    struct.pack_into("<H", data, data.find(b"PK\x01\x02") + 8, 1)
    found = scan(bytes(data), "enc.zip")
    assert "ARCHIVE-ENCRYPTED" in ids(found)
    assert marks(found) == []


def test_crc_mismatch_is_reported_and_member_still_scanned() -> None:
    data = bytearray(make_zip([("data.pkl", b"MARK")], zipfile.ZIP_STORED))
    struct.pack_into("<L", data, 14, 1)
    struct.pack_into("<L", data, data.find(b"PK\x01\x02") + 16, 1)
    found = scan(bytes(data), "crc.zip")
    assert "ZIP-HEADER-MISMATCH" in ids(found)
    assert marks(found) == [("data.pkl",)]


# -- broken and unsupported --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data"), [
    ("cut.zip", make_zip([("a", b"MARK" * 1000)], zipfile.ZIP_STORED)[:2000]),
    ("cut.tar", make_tar([("a", b"MARK" * 1000), ("b", b"x")])[:1500]),
    ("cut.gz", gzip.compress(b"MARK" * 1000)[:-12]),
    ("cut.xz", lzma.compress(b"MARK" * 1000)[:-20]),
    ("cut.bz2", bz2.compress(b"MARK" * 1000)[:-10]),
])
def test_truncated_archives_are_corrupt_findings(name: str, data: bytes) -> None:
    found = scan(data, name)
    assert "ARCHIVE-CORRUPT" in ids(found)
    assert "SCAN-ANALYZER-ERROR" not in ids(found)


def test_bad_tar_checksum_after_the_first_member_is_corrupt() -> None:
    """GNU tar skips a bad header and goes on; CPython stops silently: report it."""
    data = bytearray(make_tar([("a", b"MARK"), ("b", b"hidden")], fmt=tarfile.USTAR_FORMAT))
    data[1024 + 148: 1024 + 156] = b"0000000\0"
    found = scan(bytes(data), "bad.tar")
    assert "ARCHIVE-CORRUPT" in ids(found)
    assert marks(found) == [("a",)]


def test_data_after_the_tar_end_marker_is_reported() -> None:
    data = make_tar([("a", b"x")]) + b"hidden payload"
    assert "ARCHIVE-HIDDEN-DATA" in ids(scan(data, "t.tar"))


def test_gzip_trailing_garbage_is_reported() -> None:
    found = scan(gzip.compress(b"MARK") + b"not gzip", "a.gz")
    assert "ARCHIVE-HIDDEN-DATA" in ids(found)
    assert marks(found) == [("a",)]


@pytest.mark.parametrize("magic", [b"\x28\xb5\x2f\xfd", b"7z\xbc\xaf\x27\x1c",
                                   b"Rar!\x1a\x07\x00"])
def test_undecodable_formats_are_not_analysed_findings(magic: bytes) -> None:
    assert ids(scan(magic + bytes(100), "x.bin")) == {"ARCHIVE-UNSUPPORTED"}


def test_lz4_frames_are_decoded_when_lz4_is_installed() -> None:
    lz4_frame = pytest.importorskip("lz4.frame")
    found = scan(lz4_frame.compress(b"MARK payload"), "a.lz4")
    assert marks(found) == [("a",)]
    assert "ARCHIVE-CORRUPT" in ids(scan(b"\x04\x22\x4d\x18" + bytes(100), "x.lz4"))


def test_long_names_in_gnu_and_pax_tars() -> None:
    name = "deep/" * 40 + "evil.bin"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        assert marks(scan(make_tar([(name, b"MARK")], fmt=fmt), "long.tar")) == [(name,)]


def test_v7_tar_without_magic_is_detected_by_checksum() -> None:
    block = bytearray(make_tar([("old.bin", b"MARK v7")], fmt=tarfile.USTAR_FORMAT))
    block[257:265] = bytes(8)  # no "ustar" magic or version
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block[:512])
    assert detect(bytes(block[:512])) == "tar"
    assert marks(scan(bytes(block), "old.tar")) == [("old.bin",)]


def test_detection_by_content_not_name() -> None:
    assert detect(b"hello world" * 100) is None
    assert detect(b"\x80\x04\x95" + bytes(600)) is None  # a pickle
    assert detect(gzip.compress(b"x")) == "gzip"
    assert inner_name("model.tar.gz") == "model.tar"
    assert inner_name("w.tgz") == "w.tar"
    assert inner_name(".gz") == "<decompressed>"


def test_rules_are_unique_and_referenced() -> None:
    assert len({r.id for r in RULES}) == len(RULES)
    assert all(r.references for r in RULES)


def tar_header(name: bytes, kind: bytes, size: int) -> bytes:
    """One ustar header block with a correct checksum."""
    block = bytearray(512)
    block[:len(name)] = name
    block[100:108] = b"0000644\0"
    block[124:136] = b"%011o\0" % size
    block[156:157] = kind
    block[257:265] = b"ustar\x0000"
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def test_long_link_targets_are_checked_in_gnu_and_pax_tars() -> None:
    link = "../" * 60 + "etc/passwd"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        found = scan(make_tar([], links=[("a/cfg", link, tarfile.SYMTYPE)], fmt=fmt), "l.tar")
        (escape,) = [f for f in found if f.rule_id == "ARCHIVE-LINK-ESCAPE"]
        assert escape.evidence == f"a/cfg -> {link}"


def test_pax_redos_header_is_rejected_quickly() -> None:
    """Technique: the pax record layout that makes CPython 3.11.7's tarfile regex quadratic
    (CVE-2024-6232); our reader parses records linearly and rejects the header."""
    body = b"2 " * (256 << 10) + b"=x\n"
    data = (tar_header(b"pax", b"x", len(body)) + body + bytes(-len(body) % 512)
            + tar_header(b"evil.bin", b"0", 4) + b"MARK" + bytes(508) + bytes(1024))
    start = time.monotonic()
    found = scan(data, "redos.tar")
    assert time.monotonic() - start < 2
    assert "ARCHIVE-CORRUPT" in ids(found)


def test_oversized_extension_header_is_rejected_without_reading_it() -> None:
    data = tar_header(b"././@LongLink", b"L", 1 << 40) + bytes(1024)
    found = scan(data, "huge.tar")
    (corrupt,) = [f for f in found if f.rule_id == "ARCHIVE-CORRUPT"]
    assert "over the limit" in corrupt.message


def test_pax_size_override_is_honoured() -> None:
    """A pax ``size`` record replaces the header's size field (and where the next header is)."""
    record = b"12 size=600\n"
    body = b"MARK" + bytes(596)
    data = (tar_header(b"pax", b"x", len(record)) + record + bytes(512 - len(record))
            + tar_header(b"big.bin", b"0", 0) + body + bytes(-len(body) % 512)
            + tar_header(b"second.bin", b"0", 4) + b"MARK" + bytes(508) + bytes(1024))
    found = scan(data, "pax.tar")
    assert marks(found) == [("big.bin",), ("second.bin",)]
    assert [f.properties["size"] for f in found if f.rule_id == "TEST-MARK"] == [600, 4]


def test_endless_extension_headers_are_rejected() -> None:
    """Technique: a stream of pax headers and no member, to grow the reader's state."""
    record = b"20 comment=xxxxxxxx\n"
    header = tar_header(b"pax", b"x", len(record)) + record + bytes(512 - len(record))
    found = scan(header * 40 + bytes(1024), "pax.tar")
    (corrupt,) = [f for f in found if f.rule_id == "ARCHIVE-CORRUPT"]
    assert "extension headers" in corrupt.message
