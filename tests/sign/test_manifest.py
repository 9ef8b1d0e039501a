"""The walk and the hashing: what a signature covers, and digests equal to model-signing's."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bastion.errors import UsageError
from bastion.sign.hashing import hash_files, plan
from bastion.sign.interface import Options, build_manifest
from bastion.sign.manifest import (
    FILES,
    SHARDS,
    LocalFile,
    ManifestError,
    Serialization,
    is_ignored,
    normalise_ignore,
    parse_resource_name,
    walk_model,
)


def rels(root: Path, ignores: tuple[str, ...] = ()) -> list[str]:
    return [f.rel for f in walk_model(root, ignores).files]


def test_walk_lists_every_file_in_model_signing_order(model: Path) -> None:
    # Order is by path components (PurePosixPath), not by string: "tokenizer/…" sorts after
    # "tokenizer" would as a string prefix, and '-' (0x2d) < '/' (0x2f) must not matter.
    (model / "tokenizer-extra.txt").write_text("x", encoding="utf-8")
    assert rels(model, (".git", ".gitattributes")) == [
        "__init__.py", "config.json", "tokenizer/merges.txt", "tokenizer/vocab.txt",
        "tokenizer-extra.txt", "weights.bin"]


def test_ignore_is_a_path_prefix_by_component(model: Path) -> None:
    assert is_ignored("tokenizer/vocab.txt", ["tokenizer"])
    assert not is_ignored("tokenizer-extra.txt", ["tokenizer"])
    assert ".git/HEAD" not in rels(model, (".git",))
    assert ".git/HEAD" in rels(model)


@pytest.mark.parametrize("bad", ["/etc", "..", "a/../..", "", "."])
def test_ignore_entries_must_stay_inside_the_folder(bad: str) -> None:
    with pytest.raises(ManifestError):
        normalise_ignore(bad)


def test_symlink_outside_the_folder_is_refused(model: Path, tmp_path: Path) -> None:
    # Technique: a link that points outside the signed folder would put unsigned bytes
    # (e.g. /etc/passwd, another model) under a signed name.
    secret = tmp_path / "outside.bin"
    secret.write_bytes(b"not part of the model")
    (model / "extra.bin").symlink_to(secret)
    walk = walk_model(model)
    assert [p.rel for p in walk.problems] == ["extra.bin"]
    assert "outside the model folder" in walk.problems[0].reason
    with pytest.raises(UsageError, match=r"extra\.bin: symbolic link .* leads outside"):
        build_manifest(model, model / "model.sig")


def test_relative_symlink_escaping_with_dotdot_is_refused(model: Path, tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text("import os", encoding="utf-8")
    (model / "tokenizer" / "evil.py").symlink_to("../../evil.py")
    assert [p.rel for p in walk_model(model).problems] == ["tokenizer/evil.py"]


def test_symlink_inside_the_folder_is_hashed_as_its_target(model: Path) -> None:
    (model / "alias.bin").symlink_to("weights.bin")
    manifest = build_manifest(model, model / "model.sig", Options(method=FILES))
    digests = {r.path: r.digest for r in manifest.resources}
    assert digests["alias.bin"] == digests["weights.bin"]
    assert manifest.serialization.allow_symlinks is True


def test_symlinked_folder_is_refused(model: Path) -> None:
    (model / "loop").symlink_to(".")
    walk = walk_model(model)
    assert [p.rel for p in walk.problems] == ["loop"]
    assert "folder" in walk.problems[0].reason


def test_fifo_is_refused_not_opened(model: Path) -> None:
    # Opening a FIFO blocks forever: a hostile folder must not hang the signer.
    os.mkfifo(model / "pipe")
    walk = walk_model(model)
    assert [(p.rel, "FIFO" in p.reason) for p in walk.problems] == [("pipe", True)]


def test_non_utf8_name_cannot_be_signed(model: Path) -> None:
    name = os.fsdecode(b"bad\xff.bin")
    (model / name).write_bytes(b"x")
    assert any("UTF-8" in p.reason for p in walk_model(model).problems)


def test_walk_depth_is_bounded(tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    path = deep
    for _ in range(70):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "f").write_bytes(b"x")
    walk = walk_model(deep)
    assert walk.files == []
    assert any("deeper than" in p.reason for p in walk.problems)


def test_walk_file_count_is_bounded(model: Path) -> None:
    walk = walk_model(model, max_files=3)
    assert len(walk.files) == 3
    assert "more than 3 files" in walk.problems[-1].reason


def test_single_file_model_is_named_dot(model: Path) -> None:
    walk = walk_model(model / "weights.bin")
    assert [(f.rel, f.size) for f in walk.files] == [(".", 10240)]


def test_shard_plan_matches_model_signing_endpoints(tmp_path: Path) -> None:
    files = [LocalFile("a", tmp_path / "a", 2500), LocalFile("e", tmp_path / "e", 0)]
    units = plan(files, Serialization(SHARDS, "sha256", 1000))
    assert sorted((u.start, u.end) for u in units) == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert units[0].length == 1000  # largest first


def test_shard_names_parse_from_the_right(tmp_path: Path) -> None:
    # model-signing splits on every ':' and fails on such names; Bastion reads them.
    assert parse_resource_name("a:b.bin:0:10", SHARDS) == ("a:b.bin", 0, 10)
    with pytest.raises(ManifestError):
        parse_resource_name("a.bin:10:5", SHARDS)
    with pytest.raises(ManifestError):
        parse_resource_name("a.bin:x:5", SHARDS)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_digests_do_not_depend_on_the_number_of_threads(model: Path, workers: int) -> None:
    files = walk_model(model).files
    hashed = hash_files(files, Serialization(SHARDS, "sha256", 1000), workers)
    expected = hashlib.sha256((model / "weights.bin").read_bytes()[1000:2000]).digest()
    assert not hashed.errors
    assert {(r.path, r.start): r.digest for r in hashed.resources}[("weights.bin", 1000)] \
        == expected


def test_file_vanishing_during_hashing_is_an_error_not_a_crash(model: Path) -> None:
    files = walk_model(model).files
    (model / "weights.bin").unlink()
    hashed = hash_files(files, Serialization(FILES, "sha256", None), 2)
    assert [e.rel for e in hashed.errors] == ["weights.bin"]
    assert "weights.bin" not in {r.path for r in hashed.resources}


def test_file_growing_during_hashing_is_an_error(model: Path) -> None:
    files = walk_model(model).files
    with (model / "config.json").open("ab") as handle:
        handle.write(b"appended after the walk")
    hashed = hash_files(files, Serialization(FILES, "sha256", None), 1)
    assert [e.rel for e in hashed.errors] == ["config.json"]


def test_large_blake3_file_is_read_not_mapped(tmp_path: Path) -> None:
    # A large BLAKE3 file is hashed on BLAKE3's own threads from reads: the digest is
    # blake3's over the bytes, and a file that shrinks after the walk is an error. (Memory-
    # mapped, a file truncated during the hash kills the process with SIGBUS, and one that
    # shrank before it was silently hashed at its new length.)
    blake3 = pytest.importorskip("blake3").blake3
    from bastion.sign.hashing import BLAKE3_PARALLEL_MIN, BLAKE3_READ

    data = os.urandom(BLAKE3_PARALLEL_MIN + BLAKE3_READ + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.bin").write_bytes(data[:1000])
    files = walk_model(tmp_path).files
    hashed = hash_files(files, Serialization(FILES, "blake3", None), 2)
    assert not hashed.errors
    assert {r.path: r.digest for r in hashed.resources} == {
        "big.bin": blake3(data).digest(), "small.bin": blake3(data[:1000]).digest()}
    os.truncate(tmp_path / "big.bin", BLAKE3_PARALLEL_MIN)
    hashed = hash_files(files, Serialization(FILES, "blake3", None), 2)
    assert [(e.rel, e.reason) for e in hashed.errors] == [
        ("big.bin", "file shrank while it was hashed")]


def test_one_thread_hashes_many_large_blake3_files_through_one_buffer(tmp_path: Path) -> None:
    blake3 = pytest.importorskip("blake3").blake3
    from bastion.sign.hashing import BLAKE3_PARALLEL_MIN, Buffers

    buffers = Buffers()
    assert buffers.blake3() is buffers.blake3()  # mapped once per thread, not per file
    assert buffers.chunk() is buffers.chunk()
    contents = {f"w{i}.bin": os.urandom(BLAKE3_PARALLEL_MIN + i * 4099) for i in range(3)}
    contents["small.bin"] = b"tokenizer"
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    hashed = hash_files(walk_model(tmp_path).files, Serialization(FILES, "blake3", None), 1)
    assert not hashed.errors
    assert {r.path: r.digest for r in hashed.resources} == {
        name: blake3(data).digest() for name, data in contents.items()}


def test_nothing_to_sign_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="nothing to sign"):
        build_manifest(tmp_path / "empty", tmp_path / "x.sig")


@pytest.mark.parametrize(("method", "hash_type", "shard_size"), [
    (SHARDS, "sha256", 1000), (SHARDS, "sha256", 1_000_000_000), (FILES, "sha256", 0),
    (FILES, "blake3", 0), (FILES, "blake2b", 0)])
def test_manifest_equals_model_signing_manifest(model: Path, method: str, hash_type: str,
                                                shard_size: int) -> None:
    """The same folder, hashed by both: the same resources, names and digests."""
    hashing = pytest.importorskip("model_signing.hashing")
    config = hashing.Config()
    algorithm = "blake2" if hash_type == "blake2b" else hash_type
    if method == SHARDS:
        config.use_shard_serialization(hashing_algorithm=algorithm, shard_size=shard_size)
    else:
        config.use_file_serialization(hashing_algorithm=algorithm)
    theirs = {(d.identifier, d.digest.algorithm, d.digest.digest_hex)
              for d in config.hash(model).resource_descriptors()}
    ours = build_manifest(model, model / "model.sig",
                          Options(method, hash_type, shard_size or 1, workers=2))
    assert {(r.name, r.algorithm, r.digest.hex()) for r in ours.resources} == theirs


def test_cancelled_hashing_stops_its_threads_and_reports_no_digest(tmp_path: Path) -> None:
    import threading

    from bastion.sign.hashing import start_hashing
    from bastion.sign.manifest import Serialization, walk_model

    for i in range(8):
        (tmp_path / f"f{i}.bin").write_bytes(os.urandom(1 << 20) * 8)
    walk = walk_model(tmp_path, [])
    pending = start_hashing(walk.files, Serialization("shards", "sha256", 1 << 20), workers=2)
    pending.cancel()
    assert not [t for t in threading.enumerate() if t.name.startswith("bastion-hash")]
    hashed = pending.result()
    # whatever finished before the cancel is a real digest; the rest is an error, never a
    # digest of part of a unit
    assert hashed.errors  # 64 MiB cannot be hashed before the cancel lands
    assert all(e.reason == "cancelled" for e in hashed.errors)
    full = start_hashing(walk.files, Serialization("shards", "sha256", 1 << 20), 2).result()
    assert len(full.resources) == 64
    assert not full.errors
    done = {(r.path, r.start): r.digest for r in full.resources}
    assert all(done[(r.path, r.start)] == r.digest for r in hashed.resources)


def test_a_key_that_does_not_load_stops_the_hashing(tmp_path: Path) -> None:
    from bastion.errors import UsageError
    from bastion.sign.interface import sign_model

    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"x" * 1000)
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(UsageError, match="not a PEM private key"):
        sign_model(model, tmp_path / "bad.pem")
    assert not (model / "model.sig").exists()


def test_relative_inside_names_paths_in_the_folder_only(tmp_path: Path) -> None:
    from bastion.sign.manifest import relative_inside

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    assert relative_inside(folder, folder / "model.sig") == "model.sig"
    assert relative_inside(folder, folder / "sub" / "x.sig") == "sub/x.sig"
    assert relative_inside(folder, folder / "..hidden.sig") == "..hidden.sig"  # not a parent
    assert relative_inside(folder, tmp_path / "model.sig") is None
    assert relative_inside(folder, folder) is None
    (tmp_path / "file.bin").write_bytes(b"x")
    assert relative_inside(tmp_path / "file.bin", tmp_path / "file.bin.sig") is None
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    assert relative_inside(tmp_path / "link", folder / "model.sig") == "model.sig"


def test_ignore_entries_normalise_as_pure_posix_paths_do() -> None:
    # normalise_ignore reads an entry with string operations (no pathlib on the verify fast
    # path); its verdicts and results must be PurePosixPath's, on every shape of entry.
    import itertools
    from pathlib import PurePosixPath

    def reference(path: str) -> str | None:
        pure = PurePosixPath(path.replace("\\", "/"))
        if pure.is_absolute() or not pure.parts or ".." in pure.parts:
            return None
        return pure.as_posix()

    pieces = ["", "a", ".", "..", "b.c", "...", "\\", "/", "//", " "]
    checked = 0
    for n in range(1, 5):
        for combo in itertools.product(pieces, repeat=n):
            text = "/".join(combo)
            for candidate in (text, "/" + text, text + "/"):
                try:
                    got: str | None = normalise_ignore(candidate)
                except ManifestError:
                    got = None
                assert got == reference(candidate), candidate
                checked += 1
    assert checked > 30_000


def test_default_signature_is_model_sig_in_a_folder_and_file_sig_beside_a_file(
        tmp_path: Path) -> None:
    from bastion.sign.manifest import default_signature, default_signature_name

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"x")
    cases = ((folder, folder / "model.sig"), (folder / "w.bin", folder / "w.bin.sig"),
             (folder / "." / "w.bin", folder / "w.bin.sig"))
    for given, expected in cases:
        assert default_signature(given) == expected
        for text in (str(given), str(given) + ("/" if given.is_dir() else "")):
            assert Path(default_signature_name(text)) == expected, text


def test_read_buffer_is_page_aligned_and_writable() -> None:
    # The kernel copies file data into it: a buffer 16 bytes past a page boundary (what a
    # bytearray of 1 MiB is) made SHA-256 of a warm 4 GB folder ~9% slower (files.py).
    import ctypes

    from bastion.files import aligned_buffer

    view = aligned_buffer(1 << 20)
    assert len(view) == 1 << 20
    assert not view.readonly
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    assert address % 4096 == 0
    view[:3] = b"abc"
    assert bytes(view[:3]) == b"abc"


def _evict(path: Path, start: int = 0, length: int = 0) -> bool:
    """Drop a file's pages from the page cache (no root needed for clean pages); whether
    they really went (not on tmpfs, say)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
        os.preadv(fd, [bytearray(4096)], start, os.RWF_NOWAIT)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="Linux's non-blocking reads")
@pytest.mark.parametrize("cached", ["none", "first-half", "all"])
def test_bytes_not_in_the_page_cache_are_read_ahead_and_hashed_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: str) -> None:
    from bastion.sign import hashing

    data = os.urandom(3 * hashing.PREFETCH + 12345)
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    # On a boundary of the page cache's largest pages (folios of up to 2 MiB and more: one
    # that straddles the boundary stays cached).
    first = len(data) // 2 >> 23 << 23 if cached == "first-half" else 0
    if cached != "all" and not _evict(path, first):
        pytest.skip("this file system keeps every page cached")
    advised: list[tuple[int, int]] = []
    fadvise = os.posix_fadvise

    def recording(fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_WILLNEED:
            advised.append((offset, length))
        fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", recording)
    hashed = hash_files(walk_model(tmp_path).files, Serialization(SHARDS, "sha256", 2 ** 30), 1)
    assert not hashed.errors
    assert [r.digest for r in hashed.resources] == [hashlib.sha256(data).digest()]
    if cached == "all":
        assert advised == []  # a warm cache is read as it is, with no advice at all
    else:
        # From the first read that would wait for the disk, ahead in contiguous windows, to
        # the end of the unit and never past it.
        assert advised[0][0] >= first - hashing.CHUNK
        ends = [offset + length for offset, length in advised]
        assert [offset for offset, _ in advised[1:]] == ends[:-1]
        assert ends[-1] == len(data)
