"""``bastion scan PATH...``: the gate for CI and pre-commit."""

from __future__ import annotations

from pathlib import Path

import typer

from bastion.cli.common import (
    FAIL_ON,
    FORMAT,
    OUTPUT,
    POLICY,
    QUIET,
    emit,
    exit_code,
    guarded,
    progress_reporter,
    resolve_policy,
)
from bastion.findings import Severity
from bastion.report import Format


def scan(
    paths: list[str] = typer.Argument(..., help="Files and folders to scan.", show_default=False),
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
) -> None:
    """Scan model files, manifests and folders; exit 1 when a finding reaches the threshold."""
    with guarded():
        policy, source = resolve_policy(policy_file)
        policy = policy.with_overrides(fail_on=fail_on)
        from bastion.engine import scan_paths  # the analyzers load here, not at start-up

        update, stop = progress_reporter(quiet)
        try:
            report = scan_paths(paths, policy, policy_source=source, progress=update)
        finally:
            stop()
        emit(report, fmt, output, quiet)
    raise typer.Exit(exit_code(report))
