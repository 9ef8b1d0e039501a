"""A command whose optional extra is not installed says which extra to install: one line,
exit 2, never a traceback or an "internal error". The missing package is simulated in a child
process (``sys.modules[name] = None`` makes its import fail as if it were not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


def _bastion_without(module: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (f"import sys; sys.modules[{module!r}] = None; sys.argv = ['bastion', *{argv!r}]; "
            "from bastion.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("sqlalchemy", ("models", "list"), "gateway"),
    ("sqlalchemy", ("audit-log", "verify"), "gateway"),
    ("sqlalchemy", ("scan", str(DEMO), "--cache"), "cache"),
    ("uvicorn", ("serve",), "gateway"),
    ("numpy", ("assess", "--demo"), "assess"),
])
def test_missing_extra_is_named(tmp_path: Path, module: str, argv: tuple[str, ...],
                                extra: str) -> None:
    result = _bastion_without(module, *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"bastion-mlsec[{extra}]" in result.stderr
    assert "scan --cache" not in result.stderr  # one extra named, the one this command needs
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
