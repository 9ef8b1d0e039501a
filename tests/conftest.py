"""Shared fixtures: report builders, the CLI run two ways, schemas, and an isolated cwd.

The CLI is exercised for real in a subprocess (``python -m bastion``, exit codes and all)
where the process boundary matters, and in-process with Typer's ``CliRunner`` where a test
needs to swap the analyzers for a plug-in of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion.findings import Finding, Report, ScanStats, Severity, Skipped

#: The ``shared`` folder beside the repository root holds reference schemas (SARIF 2.1.0).
SHARED_SCHEMAS = Path(__file__).resolve().parents[1] / ".." / "shared" / "schemas"

#: Environment variables the CLI reads; a developer's shell must not change test results.
_BASTION_ENV = ("BASTION_FORMAT", "BASTION_OUTPUT", "BASTION_POLICY", "BASTION_FAIL_ON",
                "BASTION_QUIET", "BASTION_DEBUG", "BASTION_CACHE", "BASTION_JOBS", "BASTION_RAY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in _BASTION_ENV:
        monkeypatch.delenv(name, raising=False)
    # The advisory database lives in the session's temporary folder, never the user's cache.
    cache = tmp_path_factory.getbasetemp() / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("BASTION_DB", str(cache / "bastion" / "advisories.sqlite"))


def _make_report(
    findings: Sequence[Finding] = (),
    *,
    fail_on: Severity = Severity.MEDIUM,
    skipped: Sequence[Skipped] = (),
    notes: Sequence[str] = (),
) -> Report:
    """A report with a fixed start time, as the renderers see one."""
    return Report(
        tool_version="0.1.0",
        started=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        roots=("models",),
        fail_on=fail_on,
        findings=tuple(findings),
        skipped=tuple(skipped),
        stats=ScanStats(files=3, bytes=1234, analyzed=2, seconds=0.5),
        notes=tuple(notes),
    )


@pytest.fixture
def make_report() -> Callable[..., Report]:
    """Build a :class:`Report` from findings (fixed start time and stats)."""
    return _make_report


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    #: An exception that escaped the app (in-process runs only).
    exception: BaseException | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def assert_clean(self) -> None:
        """No traceback, ever: errors are one message, hostile inputs are findings."""
        assert "Traceback" not in self.output, self.output
        assert "internal error" not in self.output, self.output
        assert self.exception is None or isinstance(self.exception, SystemExit), self.exception


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _BASTION_ENV}
    env["COLUMNS"] = "200"  # keep messages on one line, whatever the test runner's terminal
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_cli(
    *args: str | Path,
    cwd: Path,
    prefix: Sequence[str] = (),
    timeout: float = 30,
) -> CliResult:
    """``python -m bastion ARGS`` in a subprocess (``prefix`` wraps it, e.g. with setpriv)."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "bastion", *map(str, args)],
        cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, errors="replace", check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., CliResult]:
    """Run the real CLI in a subprocess from ``tmp_path`` (no stray policy is discovered)."""

    def run(*args: str | Path, cwd: Path = tmp_path, **kwargs: Any) -> CliResult:
        return run_cli(*args, cwd=cwd, **kwargs)

    return run


@pytest.fixture
def invoke(tmp_path: Path) -> Callable[..., CliResult]:
    """Run the CLI in-process with Typer's runner (fast; and plug-ins can be patched in)."""
    from typer.testing import CliRunner

    from bastion.cli import app

    def run(*args: str | Path, cwd: Path = tmp_path,
            env: dict[str, str] | None = None) -> CliResult:
        previous = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, [str(a) for a in args], env=env)
        finally:
            os.chdir(previous)
        return CliResult(result.exit_code, result.stdout, result.stderr, result.exception)

    return run


@pytest.fixture(scope="session")
def sarif_schema() -> dict[str, Any]:
    path = SHARED_SCHEMAS / "sarif-schema-2.1.0.json"
    if not path.is_file():
        pytest.skip(f"SARIF 2.1.0 schema not found at {path.resolve()} (the shared/ folder "
                    "beside the repository root); cannot validate SARIF output")
    schema = dict(json.loads(path.read_text(encoding="utf-8")))
    # This copy keeps the log's own schema in definitions.Root with nothing at the top: as is,
    # every document would validate. Point the top at Root so validation means something.
    if "$ref" not in schema and "properties" not in schema and "Root" in schema.get(
        "definitions", {}
    ):
        schema["$ref"] = "#/definitions/Root"
    return schema


@pytest.fixture
def text_tree(tmp_path: Path) -> Path:
    """A folder with one harmless text file: nothing any analyzer should claim."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "README.txt").write_text("just some text, not a model\n", encoding="utf-8")
    return root


#: What a hostile artifact might put in a string the report shows: Rich markup, an ANSI
#: escape, HTML, an OSC 8 hyperlink and a bidi override.
HOSTILE = ("[bold red]x[/] \x1b[31mRED\x1b[0m <script>alert(1)</script> "
           "\x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \u202efdp.exe")


@pytest.fixture
def sample_report() -> Report:
    """Findings of every shape a renderer must handle, hostile text included."""
    from bastion.findings import Category, Location, Suppression
    from bastion.rules import SYMLINK_LOOP, UNREADABLE

    nested = UNREADABLE.finding(
        Location(path="models/bundle.zip", members=("inner.tar", "data.pkl")).at(offset=1234),
        "a member could not be read", evidence=HOSTILE, references=("CWE-502", "ML06"),
    )
    suppressed = SYMLINK_LOOP.finding(Location(path="models/loop"), "loop").replace(
        suppression=Suppression(reason="known loop, harmless", expires="2099-12-31"))
    plugin = Finding(  # a plug-in's rule that is not in the catalogue
        rule_id="PLUGIN-EVIL", severity=Severity.CRITICAL, category=Category.CODE_EXECUTION,
        location=Location(path="/abs/path/evil model.bin", line=7),
        message=f"plug-in says: {HOSTILE}", evidence="<script>alert(1)</script>",
    )
    return _make_report(
        [plugin, nested, suppressed],
        skipped=[Skipped(path="models/pipe", reason="not a regular file (FIFO); not opened")],
        notes=["advisory database is 3 days old"],
    )
