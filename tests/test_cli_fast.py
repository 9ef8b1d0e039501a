"""The fast path of `bastion scan` (no Typer import) gives exactly what the Typer command
gives: same stdout, same exit code, for every format and for errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def _run(args: list[str], cwd: Path, fast: bool, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    base.update(env or {})
    code = ("import sys; from bastion.cli.fast import run_fast; "
            "sys.argv[0] = 'bastion'; rc = run_fast(sys.argv[1:]); "
            "assert rc is not None, 'fast path declined'; sys.exit(rc)") if fast else (
            "import sys; from bastion.cli.commands import app; sys.argv[0] = 'bastion'; app()")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["scan", str(DEMO), "-q", "-f", "json"],
    ["scan", str(DEMO), "--format=sarif", "--quiet"],
    ["scan", str(DEMO / "model.pkl"), "-q", "--fail-on", "critical", "-f", "json"],
    ["scan", str(DEMO / "classifier.safetensors"), "-q"],
    ["scan", "/no/such/path", "-q"],
])
def test_fast_path_matches_typer(args: list[str], tmp_path: Path) -> None:
    fast = _run(args, tmp_path, fast=True)
    slow = _run(args, tmp_path, fast=False)
    assert fast.returncode == slow.returncode, (fast.stderr, slow.stderr)

    def stable(text: str) -> str:  # timings and start times differ between two runs
        import re
        text = re.sub(r'"(seconds|started|startTimeUtc)": [^,\n]*', "", text)
        return re.sub(r"in \d+\.\d+s", "in Ns", text)

    assert stable(fast.stdout) == stable(slow.stdout)
    assert "Traceback" not in fast.stderr


def test_fast_path_reads_environment_and_declines_what_it_does_not_know(tmp_path: Path) -> None:
    from bastion.cli.fast import run_fast

    assert run_fast(["scan", "--help"]) is None
    assert run_fast(["scan", str(DEMO), "--format", "xml"]) is None  # Typer lists the choices
    assert run_fast(["rules"]) is None
    assert run_fast(["scan"]) is None
    env = _run(["scan", str(DEMO / "model.pkl")], tmp_path, fast=True,
               env={"BASTION_FORMAT": "json", "BASTION_QUIET": "1"})
    assert env.returncode == 1
    assert '"PICKLE-DANGEROUS-GLOBAL"' in env.stdout
