"""requirements files: pip's line format, includes, and hostile sizes."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.supply.inventory import REQUIREMENTS, Inventory, SkipKind, read_manifest
from bastion.supply.inventory.requirements import MAX_INCLUDE_DEPTH, logical_lines

Make = Callable[..., Inventory]


def by_name(inventory: Inventory) -> dict[str, object]:
    return {d.name: d for d in inventory.dependencies}


def test_pins_ranges_markers_extras_and_names_are_normalized(manifest: Make) -> None:
    inv = manifest("requirements.txt", (
        "# comment line\n"
        "Torch==1.13.0  # trailing comment\n"
        "transformers[torch,sentencepiece]==4.30.0 ; python_version >= '3.8'\n"
        "numpy>=1.26,<2\n"
        "Flask_Cors===3.0.9\n"
        "scipy==1.*\n"
        "\n"))
    deps = by_name(inv)
    torch = deps["torch"]
    assert (torch.version, torch.pinned, torch.line, torch.display_name) == (
        "1.13.0", True, 2, "Torch")
    tf = deps["transformers"]
    assert tf.extras == ("sentencepiece", "torch")
    assert tf.markers == 'python_version >= "3.8"'
    assert deps["numpy"].pinned is False
    assert deps["numpy"].version is None
    assert deps["flask-cors"].version == "3.0.9"  # PEP 503: _ and case folded
    assert deps["scipy"].pinned is False  # a wildcard is a range, not a pin
    assert not inv.skipped


def test_continuations_and_hashes(manifest: Make) -> None:
    inv = manifest("requirements.txt", (
        "requests==2.31.0 \\\n"
        "    --hash=sha256:aaaa \\\n"
        "    --hash=sha256:bbbb\n"
        "idna==3.4\n"))
    deps = by_name(inv)
    assert deps["requests"].hashes is True
    assert deps["requests"].line == 1
    assert deps["idna"].hashes is False
    assert deps["idna"].line == 4
    assert [(ll.start, ll.end) for ll in logical_lines(
        "a==1 \\\n  --hash=x\nb==2\n")] == [(1, 2), (3, 3)]


def test_urls_editables_and_options_are_data_not_errors(manifest: Make) -> None:
    inv = manifest("requirements.txt", (
        "--index-url https://example.invalid/simple\n"
        "--extra-index-url=https://example.invalid/extra\n"
        "--require-hashes\n"
        "-e git+https://github.com/org/proj.git#egg=proj\n"
        "pkg @ https://example.invalid/pkg-1.0.tar.gz\n"
        "git+https://github.com/org/other.git\n"
        "https://example.invalid/wheels/tqdm-4.66.1-py3-none-any.whl\n"
        "./local/folder\n"
        "--frobnicate\n"
        "this is not ! a requirement\n"))
    kinds = sorted((s.line, s.kind) for s in inv.skipped)
    assert kinds == [(4, SkipKind.NOT_AUDITABLE), (5, SkipKind.NOT_AUDITABLE),
                     (6, SkipKind.NOT_AUDITABLE), (8, SkipKind.NOT_AUDITABLE),
                     (9, SkipKind.INVALID), (10, SkipKind.INVALID)]
    # A wheel named by URL still says its name and version: it is audited.
    assert by_name(inv)["tqdm"].version == "4.66.1"


def test_nested_includes_relative_to_the_including_file(tmp_path: Path) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "requirements.txt").write_text("-r reqs/base.txt\n-c constraints.txt\nflask\n")
    (tmp_path / "reqs" / "base.txt").write_text("--requirement=more.txt\ntorch==1.13.0\n")
    (tmp_path / "reqs" / "more.txt").write_text("numpy==1.21.0\n")
    (tmp_path / "constraints.txt").write_text("flask==0.12\n")
    inv = read_manifest(tmp_path / "requirements.txt", "requirements.txt")
    deps = by_name(inv)
    assert deps["torch"].source == "reqs/base.txt"
    assert deps["torch"].line == 2
    assert deps["numpy"].source == "reqs/more.txt"
    assert deps["flask"].version is None  # the requirement itself is loose...
    assert next(d for d in inv.dependencies if d.constraint).version == "0.12"  # ...pinned by -c
    assert not inv.skipped


def test_include_cycle_missing_and_remote_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("-r b.txt\nsix==1.16.0\n")
    (tmp_path / "b.txt").write_text("-r a.txt\n-r missing.txt\n-r https://example.invalid/r.txt\n")
    inv = read_manifest(tmp_path / "a.txt", "a.txt")
    reasons = [s.reason for s in inv.skipped if s.kind is SkipKind.INCLUDE]
    assert any("cycle" in r for r in reasons)
    assert any("missing.txt" in r for r in reasons)
    assert any("remote include" in r for r in reasons)
    assert "six" in by_name(inv)


def test_include_depth_is_bounded(tmp_path: Path) -> None:
    for i in range(MAX_INCLUDE_DEPTH + 5):
        (tmp_path / f"r{i}.txt").write_text(f"-r r{i + 1}.txt\npkg{i}==1.0\n")
    inv = read_manifest(tmp_path / "r0.txt", "r0.txt")
    assert any("deeper" in s.reason for s in inv.skipped)
    assert len(inv.dependencies) == MAX_INCLUDE_DEPTH + 1


def test_bytes_without_a_path_do_not_follow_includes() -> None:
    inv = REQUIREMENTS.read(b"-r other.txt\nsix==1.16.0\n", "member.txt")
    assert inv.skipped[0].kind is SkipKind.INCLUDE
    assert "no file system path" in inv.skipped[0].reason


def test_a_1gb_requirements_file_is_cut_in_bounded_time(tmp_path: Path) -> None:
    """Technique: resource exhaustion with a huge (here sparse) file of one endless line."""
    path = tmp_path / "requirements.txt"
    with path.open("wb") as handle:
        handle.write(b"six==1.16.0\n")
        handle.truncate(2**30)
    clock = time.perf_counter()
    inv = read_manifest(path, "requirements.txt")
    assert time.perf_counter() - clock < 10
    kinds = {s.kind for s in inv.skipped}
    assert SkipKind.TOO_LARGE in kinds  # the rest of the file was not read
    assert by_name(inv)["six"].version == "1.16.0"  # what was read still counts


def test_millions_of_lines_stop_at_the_line_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Technique: an endless stream of lines; reading stops at the byte and line limits."""
    monkeypatch.setattr("bastion.supply.inventory.requirements.MAX_LINES", 5_000)

    class Endless(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            chunk = (b"a==1\n" * (len(buffer) // 5 + 1))[:len(buffer)]
            buffer[:len(chunk)] = chunk
            return len(chunk)

    from bastion.supply.inventory import read_stream

    inv = read_stream(REQUIREMENTS, io.BufferedReader(Endless()), "requirements.txt")
    assert any(s.kind is SkipKind.TOO_LARGE for s in inv.skipped)
    assert len(inv.dependencies) == 5_000


def test_undecodable_bytes_and_nul_lines_do_not_raise(manifest: Make) -> None:
    inv = manifest("requirements.txt", b"\xff\xfe\x00garbage\nsix==1.16.0\n\x00\x00\n")
    assert "six" in by_name(inv)
    assert all(s.kind is SkipKind.INVALID for s in inv.skipped)
