"""The parts of a reporting command that need no CLI framework: policy, output, exit codes.

Kept free of Typer so the fast path of ``bastion scan`` (:mod:`bastion.cli.fast`) can use
them without paying for Typer's import on every run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import UsageError
from bastion.files import replace_atomic
from bastion.findings import Report, Severity
from bastion.policy import DEFAULT, Policy, find_policy, load_policy
from bastion.report import Format, render

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # paths stay greppable


def resolve_policy(path: Path | None, fail_on: Severity | None = None) -> tuple[Policy, str]:
    """The policy named on the command line, else the nearest one, else the defaults, with
    the command line's ``--fail-on`` over the policy's.

    Rule ids named in the policy are checked against the whole catalogue, which imports every
    analyzer: only done when the policy names rules at all."""
    if path is None:
        path = find_policy(Path.cwd())
        if path is None:
            return DEFAULT.with_overrides(fail_on=fail_on), ""
    policy = load_policy(path)
    if policy.severity or policy.ignore:
        from bastion.catalogue import rule_ids

        policy = load_policy(path, known_rules=rule_ids())
    return policy.with_overrides(fail_on=fail_on), str(path)


def write_atomic(path: Path, text: str) -> None:
    """Write a report so that a crash never leaves half a file where a whole one was."""
    target = path.resolve()
    if target.is_dir():
        raise UsageError(f"--output {path} is a folder")
    if not target.parent.is_dir():
        raise UsageError(f"--output {path}: folder {target.parent} does not exist")
    replace_atomic(target, text.encode("utf-8"))


def write_output(text: str, output: Path | None) -> None:
    """A rendered report to standard output, or atomically to ``--output``."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)


def output_closed() -> int:
    """The reader of standard output went away (``bastion scan ... | head``): not a bug, and
    nothing more to say to anyone. Standard output is pointed at the null device, so the
    final flush cannot fail again, and the command ends with 2 (its report was not
    delivered) without a message."""
    with suppress(OSError, ValueError, AttributeError):  # (no standard output at all)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return EXIT_ERROR


def unexpected(exc: Exception) -> tuple[str, str | None]:
    """The one-line message and hint for an error no command anticipated: a missing optional
    extra names the extra to install; anything else is a bug, said plainly (re-raised with
    ``BASTION_DEBUG=1`` so the traceback shows)."""
    if isinstance(exc, ModuleNotFoundError):
        from bastion.errors import missing_extra

        command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
        missing = missing_extra(exc, command)
        if missing is not None:
            return missing.message, missing.hint
    if os.environ.get("BASTION_DEBUG"):
        raise exc
    return (f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in Bastion; rerun with BASTION_DEBUG=1 for the traceback")


def emit(report: Report, fmt: Format, output: Path | None, quiet: bool) -> None:
    """Write the report where it was asked for; a summary line goes to standard error."""
    if output is None and fmt is Format.TERMINAL:
        from rich.console import Console

        from bastion.report.terminal import print_report

        print_report(report, {}, Console(highlight=False))
        return
    write_output(render(report, fmt), output)
    if not quiet:
        from bastion.report.terminal import summary_line

        stderr_console().print(summary_line(report))


def exit_code(report: Report) -> int:
    return EXIT_OK if report.passed else EXIT_FINDINGS


def progress_reporter(quiet: bool) -> tuple[Callable[[str, int, int], None] | None,
                                            Callable[[], None]]:
    """A Rich progress bar on standard error when it is a terminal and not ``--quiet``."""
    if quiet or not sys.stderr.isatty():
        return None, lambda: None
    console = stderr_console()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), console=console, transient=True)
    task = bar.add_task("", total=None)
    bar.start()

    def update(path: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, description=path[-60:])

    return update, bar.stop


__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "emit", "exit_code", "progress_reporter",
           "resolve_policy", "stderr_console", "write_atomic"]
