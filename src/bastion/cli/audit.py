"""``bastion audit PATH...``: known vulnerabilities in manifests and environments, offline.

Reads requirements files, ``pyproject.toml``, lock files and conda environments (files or
folders), installed environments (``--python``, a ``site-packages`` folder or a virtual
env), matches every pinned version against the local advisory database, and reports through
the shared renderers and exit codes. ``--fix`` rewrites requirements files to the smallest
safe versions (showing the diff); ``--baseline`` reports only what is new since a stored
JSON report, for scheduled jobs that must alert the moment a deployed set becomes affected.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

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
    resolve_policy,
    stderr_console,
)
from bastion.errors import UsageError
from bastion.findings import Severity
from bastion.report import Format

if TYPE_CHECKING:
    from bastion.supply.assess import Assessment
    from bastion.supply.audit import AuditResult

DB = typer.Option(None, "--db", envvar="BASTION_DB", dir_okay=False,
                  help="Advisory database file (default: the user cache folder).")


def audit_cmd(
    paths: list[str] = typer.Argument(None, help="Manifests, project folders, site-packages "
                                      "folders or virtual environments.", show_default=False),
    python: Path | None = typer.Option(None, "--python", help="Audit the environment of this "
                                       "interpreter (read from metadata, never run)."),
    fix: bool = typer.Option(False, "--fix", help="Rewrite requirements files to the smallest "
                             "versions that clear every advisory, and show the diff."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --fix: show the diff only."),
    baseline: Path | None = typer.Option(None, "--baseline", dir_okay=False, help="A previous "
                                         "JSON report: report only findings not in it."),
    db: Path | None = DB,
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
) -> None:
    """Audit dependencies for known vulnerabilities; exit 1 when a finding reaches the threshold."""
    from bastion.supply.advisories.store import open_default
    from bastion.supply.audit import audit, only_new

    with guarded():
        if not paths and python is None:
            raise UsageError("nothing to audit", hint="give manifest files or folders, or "
                             "--python PATH")
        policy, source = resolve_policy(policy_file, fail_on)
        store = open_default(db)
        result = audit(paths or [], store, policy, python=python, policy_source=source)
        notes: list[str] = []
        if fix:
            notes = _fix(result, dry_run=dry_run, to_stdout=fmt is Format.TERMINAL and not output)
            if notes and not dry_run:  # audit again: the report shows what remains
                result = audit(paths or [], store, policy, python=python, policy_source=source)
        report = result.report.replace(notes=(*result.report.notes, *notes))
        if baseline is not None:
            report = only_new(report, baseline)
        emit(report, fmt, output, quiet)
    raise typer.Exit(exit_code(report))


def _fix(result: AuditResult, *, dry_run: bool, to_stdout: bool) -> list[str]:
    """Rewrite every requirements file that pins a vulnerable version; notes of what was done."""
    from bastion.supply.fix import Edit, rewrite, unified_diff, write_atomic

    console = stderr_console()
    by_file: dict[str, list[Assessment]] = defaultdict(list)
    notes: list[str] = []
    for item in result.assessments:
        if item.inventory_kind != "requirements":
            notes.append(f"--fix: {item.dependency.label} in {item.dependency.source} is not in "
                         "a requirements file; upgrade it with its tool")
        elif item.fix.version is None:
            notes.append(f"--fix: {item.dependency.label}: {item.fix.reason}")
        elif item.dependency.line is not None:
            by_file[item.dependency.source].append(item)
    for source, items in sorted(by_file.items()):
        path = Path(source)
        before = path.read_text(encoding="utf-8", errors="surrogateescape")
        edits = [Edit(i.dependency.line or 0, i.dependency.version or "", i.fix.version or "")
                 for i in items]
        done = rewrite(before, edits)
        for edit in done.missed:
            notes.append(f"--fix: could not rewrite line {edit.line} of {source}; change "
                         f"{edit.old} to {edit.new} by hand")
        for line in done.unhashed:
            console.print(f"warning: {source}:{line}: --hash options removed: they were for "
                          "the old version; regenerate them", markup=False, style="yellow")
        if done.text == before:
            continue
        diff = unified_diff(source, before, done.text)
        if to_stdout:
            typer.echo(diff, nl=False)
        else:
            console.print(diff, markup=False, highlight=False, end="")
        if not dry_run:
            write_atomic(path, done.text)
        verb = "would upgrade" if dry_run else "upgraded"
        notes.append(f"--fix: {verb} {len(done.applied)} pins in {source}")
    return notes
