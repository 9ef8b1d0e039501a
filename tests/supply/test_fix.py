"""Rewriting requirements files: pins changed, everything else kept, hashes dropped."""

from __future__ import annotations

from pathlib import Path

from bastion.supply.fix import Edit, rewrite, unified_diff, write_atomic

TEXT = """# pinned by hand
--index-url https://example.invalid/simple
torch[cuda]==1.13.0 ; sys_platform == "linux"  # keep me
mlflow == 2.8.0 \\
    --hash=sha256:aaaa \\
    --hash=sha256:bbbb
numpy>=1.26
mlflow-skinny==2.8.0
"""


def test_pins_change_comments_markers_and_options_stay() -> None:
    done = rewrite(TEXT, [Edit(3, "1.13.0", "1.13.1"), Edit(4, "2.8.0", "2.10.1")])
    lines = done.text.splitlines()
    assert lines[2] == 'torch[cuda]==1.13.1 ; sys_platform == "linux"  # keep me'
    assert lines[3] == "mlflow == 2.10.1"  # the hashes were for 2.8.0: gone
    assert lines[4] == "numpy>=1.26"
    assert lines[5] == "mlflow-skinny==2.8.0"  # another package with the same version: untouched
    assert lines[:2] == TEXT.splitlines()[:2]
    assert done.unhashed == (4,)
    assert not done.missed


def test_an_edit_that_does_not_match_is_reported() -> None:
    done = rewrite(TEXT, [Edit(7, "9.9", "10.0")])
    assert done.missed
    assert done.text == TEXT


def test_diff_and_atomic_write_keep_mode(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(TEXT)
    path.chmod(0o640)
    after = rewrite(TEXT, [Edit(3, "1.13.0", "1.13.1")]).text
    diff = unified_diff("requirements.txt", TEXT, after)
    assert "-torch[cuda]==1.13.0" in diff
    assert "+torch[cuda]==1.13.1" in diff
    write_atomic(path, after)
    assert path.read_text() == after
    assert (path.stat().st_mode & 0o777) == 0o640
