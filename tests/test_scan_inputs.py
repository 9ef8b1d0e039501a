"""``bastion scan`` on the file-system traps a hostile checkout can hold.

Missing and unreadable paths, symlink loops (through a folder and a link to itself),
dangling links, FIFOs (opening one blocks forever), empty files, links that reach one folder
many ways, and file names made of escapes. Each is reported or skipped; none hangs, crashes
or prints a traceback.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.findings import Report, Skipped
from bastion.policy import DEFAULT, parse_policy
from bastion.walk import FileEntry, walk

Cli = Callable[..., Any]


def _by_rule(report: Report) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for finding in report.findings:
        out.setdefault(finding.rule_id, []).append(finding.location.path)
    return out


def _skips(report: Report) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


@pytest.fixture
def trap_tree(tmp_path: Path) -> Path:
    """One folder holding every trap at once."""
    root = tmp_path / "trap"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "loop").symlink_to("../..")  # back to an enclosing folder
    (root / "self").symlink_to("self")  # a link to itself: ELOOP on stat
    (root / "dangling").symlink_to("does-not-exist")
    os.mkfifo(root / "pipe")
    (root / "empty.safetensors").write_bytes(b"")  # named like a model: a note
    (root / "empty.dat").write_bytes(b"")  # not named like anything: just skipped
    (root / "notes.txt").write_text("hello\n", encoding="utf-8")
    (root / "alias.txt").symlink_to("notes.txt")  # the same file twice
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    return root


def test_missing_path_is_a_usage_error(invoke: Cli) -> None:
    result = invoke("scan", "models", "also-missing")
    result.assert_clean()
    assert result.returncode == 2
    assert result.stderr.startswith("error: path not found: 'models', 'also-missing'")
    assert "hint:" in result.stderr


def test_trap_tree_from_the_cli(cli: Cli, trap_tree: Path) -> None:
    """The real process: finishes (FIFO not opened), exit code honest, no traceback."""
    result = cli("scan", trap_tree.name, "-f", "json", "--fail-on", "low",
                 cwd=trap_tree.parent, timeout=30)
    result.assert_clean()
    assert result.returncode == 1  # the loops are LOW
    report = Report.from_json(result.stdout)
    rules = _by_rule(report)
    assert sorted(rules["SCAN-SYMLINK-LOOP"]) == ["trap/self", "trap/sub/deeper/loop"]
    assert rules["SCAN-BROKEN-SYMLINK"] == ["trap/dangling"]
    assert rules["SCAN-EMPTY-FILE"] == ["trap/empty.safetensors"]
    skips = _skips(report)
    assert "FIFO" in skips["trap/pipe"]
    assert skips["trap/empty.dat"] == "empty file"
    assert skips["trap/empty.safetensors"] == "empty file"
    assert skips["trap/alias.txt"] == "no analyzer claims this content"  # walked first
    assert skips["trap/notes.txt"] == "same file as trap/alias.txt"
    assert not any(".git" in path for path in [*skips, *itertools.chain(*rules.values())])


def test_trap_tree_in_the_terminal(invoke: Cli, trap_tree: Path) -> None:
    result = invoke("scan", trap_tree, cwd=trap_tree.parent)
    result.assert_clean()
    assert result.returncode == 0  # nothing at or above medium
    assert "SCAN-SYMLINK-LOOP" in result.stdout
    assert "PASSED" in result.stdout


def test_fifo_named_directly_is_skipped_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    report = scan_paths([fifo], registry=Registry())  # would block forever if opened
    assert report.skipped == (Skipped(path=str(fifo), reason="not a regular file (FIFO); "
                                                           "not opened"),)


def test_links_named_directly(tmp_path: Path) -> None:
    (tmp_path / "self").symlink_to("self")
    (tmp_path / "gone").symlink_to("nowhere")
    report = scan_paths([tmp_path / "self", tmp_path / "gone"], registry=Registry())
    assert _by_rule(report) == {"SCAN-SYMLINK-LOOP": [str(tmp_path / "self")],
                                "SCAN-BROKEN-SYMLINK": [str(tmp_path / "gone")]}


def test_mutual_folder_links_terminate(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "to_b").symlink_to("../b")
    (tmp_path / "b" / "to_a").symlink_to("../a")
    (tmp_path / "a" / "x.txt").write_text("x", encoding="utf-8")
    items = list(itertools.islice(walk([str(tmp_path)], DEFAULT), 1000))
    assert len(items) < 1000
    files = [i.display for i in items if isinstance(i, FileEntry)]
    assert files == [f"{tmp_path}/a/x.txt"]


def test_a_lattice_of_links_is_walked_once_per_folder(tmp_path: Path) -> None:
    """Two links to the next level, 40 levels deep: 2**40 paths, one real folder each.

    Loop detection alone (ancestors on the current path) would follow every one of them.
    """
    levels = 40
    for i in range(levels):
        (tmp_path / f"l{i}").mkdir()
    for i in range(levels - 1):
        for name in ("x", "y"):
            (tmp_path / f"l{i}" / name).symlink_to(f"../l{i + 1}")
    (tmp_path / f"l{levels - 1}" / "leaf.txt").write_text("leaf", encoding="utf-8")
    items = list(itertools.islice(walk([str(tmp_path / "l0")], DEFAULT), 10_000))
    assert len(items) < 10_000, "the walk did not finish"
    files = [i for i in items if isinstance(i, FileEntry)]
    assert len(files) == 1
    assert sum(isinstance(i, Skipped) and i.reason.startswith("same folder as")
               for i in items) == levels - 1  # l1..l39: reached by x, then again by y


def test_zero_byte_files(tmp_path: Path) -> None:
    for name in ("model.pt", "weights.safetensors", "requirements.txt", "blob.dat"):
        (tmp_path / name).write_bytes(b"")
    report = scan_paths([tmp_path], registry=Registry())
    assert sorted(p.rsplit("/", 1)[1] for p in _by_rule(report)["SCAN-EMPTY-FILE"]) == [
        "model.pt", "requirements.txt", "weights.safetensors"]
    assert all(f.severity == "info" for f in report.findings)
    assert len(report.skipped) == 4
    assert report.stats.analyzed == 0
    assert report.passed


def test_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x80\x04" + b"x" * 100)
    policy = parse_policy({"limits": {"max-file-size": 10}})
    report = scan_paths([big], policy, registry=Registry())
    assert _by_rule(report) == {"SCAN-FILE-TOO-LARGE": [str(big)]}
    assert "102 bytes is over the limit of 10" in report.findings[0].message


def test_excluded_paths_are_not_walked(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "x.pt").write_bytes(b"")
    (tmp_path / "m.pt").write_bytes(b"")
    policy = parse_policy({"exclude": ["**/.venv/**", ".venv"]})
    report = scan_paths([tmp_path], policy, registry=Registry())
    assert _by_rule(report) == {"SCAN-EMPTY-FILE": [f"{tmp_path}/m.pt"]}


def test_hostile_file_names_from_the_cli(cli: Cli, invoke: Cli, tmp_path: Path) -> None:
    """Escapes, Rich markup, HTML and undecodable bytes in *names* reach every format safely."""
    root = tmp_path / "names"
    root.mkdir()
    for raw in (b"a\x1b[31mred.pt", b"[bold red]x[-]", b"<script>alert(1)<", b"\xff\xfe.pt"):
        with open(os.path.join(os.fsencode(root), raw + b".pt"), "wb"):
            pass  # empty files named like models: each gives a finding naming it
    for fmt in ("terminal", "json", "sarif", "html"):
        run = cli if fmt in ("terminal", "json") else invoke  # a real stdout for two of them
        result = run("scan", "names", "-f", fmt, cwd=tmp_path)
        result.assert_clean()
        assert result.returncode == 0, result.output
        assert "\x1b" not in result.stdout, fmt
        assert "\ufffd" not in result.stdout, fmt  # no undecodable output either
        if fmt == "sarif":  # names only appear in URIs, percent-encoded
            uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                    for r in result.json()["runs"][0]["results"]}
            assert "names/a%5Cx1b%5B31mred.pt.pt" in uris
            assert "names/%5Cxff%5Cxfe.pt.pt" in uris
        else:
            shown = result.stdout.replace("\\\\", "\\") if fmt == "json" else result.stdout
            assert "\\x1b[31mred" in shown, fmt
            assert "\\xff\\xfe" in shown, fmt
        if fmt == "html":
            assert "<script>" not in result.stdout
        if fmt == "terminal":
            assert "[bold red]x[-].pt" in result.stdout
    out = tmp_path / "r.sarif"
    result = invoke("scan", "names", "-f", "sarif", "-o", out, cwd=tmp_path)
    result.assert_clean()
    out.read_text(encoding="utf-8")  # strict UTF-8


# -- unreadable inputs -------------------------------------------------------------------------
#
# The tests run as root, and root reads a chmod 000 file anyway (CAP_DAC_OVERRIDE). Running
# the CLI with those two capabilities dropped (util-linux ``setpriv``) makes the kernel apply
# the mode bits for real; as a non-root user plain chmod is enough.


def _unprivileged_prefix(probe_dir: Path) -> list[str]:
    """A command prefix under which a chmod 000 file really is unreadable, or skip."""
    secret = probe_dir / "probe"
    secret.write_text("x", encoding="utf-8")
    secret.chmod(0)
    try:
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        prefix = [setpriv, "--inh-caps=-dac_override,-dac_read_search",
                  "--bounding-set=-dac_override,-dac_read_search", "--"]
        probe = subprocess.run([*prefix, sys.executable, "-c",
                                f"open({str(secret)!r}).read()"],
                               capture_output=True, text=True, timeout=30, check=False)
        if "PermissionError" not in probe.stderr:
            pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here (setpriv: {probe.stderr[-200:]!r})")
        return prefix
    finally:
        secret.chmod(0o600)
        secret.unlink()


def test_unreadable_file_and_folder(cli: Cli, tmp_path: Path) -> None:
    prefix = _unprivileged_prefix(tmp_path)
    root = tmp_path / "locked"
    root.mkdir()
    (root / "secret.pkl").write_bytes(b"\x80\x04N.")
    (root / "secret.pkl").chmod(0)
    (root / "closed").mkdir()
    (root / "closed" / "inside.pt").write_bytes(b"x")
    (root / "closed").chmod(0)
    (root / "fine.txt").write_text("fine\n", encoding="utf-8")
    try:
        result = cli("scan", "locked", "-f", "json", cwd=tmp_path, prefix=prefix)
    finally:
        (root / "secret.pkl").chmod(0o600)
        (root / "closed").chmod(0o700)
    result.assert_clean()
    assert result.returncode == 1  # SCAN-UNREADABLE is HIGH: fail closed
    report = Report.from_json(result.stdout)
    unreadable = {f.location.path: f.message for f in report.findings
                  if f.rule_id == "SCAN-UNREADABLE"}
    assert unreadable == {"locked/secret.pkl": "cannot read: Permission denied",
                          "locked/closed": "cannot list folder: Permission denied"}
    assert _skips(report)["locked/fine.txt"] == "no analyzer claims this content"
