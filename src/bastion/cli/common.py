"""What every reporting command shares: options, policy loading, output and error handling."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from bastion.errors import BastionError, UsageError
from bastion.findings import Report, Severity
from bastion.policy import DEFAULT, Policy, find_policy, load_policy
from bastion.report import Format, render

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

FORMAT = typer.Option(Format.TERMINAL, "--format", "-f", envvar="BASTION_FORMAT",
                      case_sensitive=False, help="Output format.")
OUTPUT = typer.Option(None, "--output", "-o", envvar="BASTION_OUTPUT", dir_okay=False,
                      help="Write the report to this file instead of standard output.")
POLICY = typer.Option(None, "--policy", "-p", envvar="BASTION_POLICY", dir_okay=False,
                      help="Policy file (bastion.toml or pyproject.toml). Default: the nearest "
                           "one above the current folder.")
FAIL_ON = typer.Option(None, "--fail-on", envvar="BASTION_FAIL_ON", case_sensitive=False,
                       help="Exit 1 when a finding is at or above this severity "
                            "(overrides the policy).")
QUIET = typer.Option(False, "--quiet", "-q", envvar="BASTION_QUIET",
                     help="No progress bar and no summary on standard error.")


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # paths stay greppable


def fail(message: str, hint: str | None = None) -> NoReturn:
    console = stderr_console()
    console.print(f"error: {message}", style="bold red", markup=False, highlight=False)
    if hint:
        console.print(f"  hint: {hint}", markup=False, highlight=False)
    raise typer.Exit(EXIT_ERROR)


@contextmanager
def guarded() -> Iterator[None]:
    """Turn every error into one message and exit code 2, never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except BastionError as exc:
        fail(exc.message, exc.hint)
    except KeyboardInterrupt:
        stderr_console().print("interrupted", style="bold red")
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so plainly, keep the exit code honest
        if os.environ.get("BASTION_DEBUG"):
            raise
        fail(f"internal error: {type(exc).__name__}: {exc}",
             "this is a bug in Bastion; rerun with BASTION_DEBUG=1 for the traceback")


def resolve_policy(path: Path | None) -> tuple[Policy, str]:
    """The policy named on the command line, else the nearest one, else the defaults."""
    from bastion.catalogue import rule_ids

    if path is None:
        path = find_policy(Path.cwd())
        if path is None:
            return DEFAULT, ""
    return load_policy(path, known_rules=rule_ids()), str(path)


def write_atomic(path: Path, text: str) -> None:
    """Write a report so that a crash never leaves half a file where a whole one was."""
    target = path.resolve()
    if target.is_dir():
        raise UsageError(f"--output {path} is a folder")
    if not target.parent.is_dir():
        raise UsageError(f"--output {path}: folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes the file private (0600); a report gets the usual mode a shell gives.
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def emit(report: Report, fmt: Format, output: Path | None, quiet: bool) -> None:
    """Write the report where it was asked for; a summary line goes to standard error."""
    from bastion.report.terminal import print_report, summary_line

    if output is None and fmt is Format.TERMINAL:
        print_report(report, {}, Console(highlight=False))
        return
    text = render(report, fmt)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text)
    if not quiet:
        stderr_console().print(summary_line(report))


def exit_code(report: Report) -> int:
    return EXIT_OK if report.passed else EXIT_FINDINGS


def progress_reporter(quiet: bool) -> tuple[Callable[[str, int, int], None] | None,
                                            Callable[[], None]]:
    """A Rich progress bar on standard error when it is a terminal and not ``--quiet``."""
    console = stderr_console()
    if quiet or not console.is_terminal:
        return None, lambda: None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("[bold]scanning"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), console=console, transient=True)
    task = bar.add_task("", total=None)
    bar.start()

    def update(path: str, done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, description=path[-60:])

    return update, bar.stop


__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "FAIL_ON", "FORMAT", "OUTPUT", "POLICY",
           "QUIET", "Severity", "emit", "exit_code", "fail", "guarded", "progress_reporter",
           "resolve_policy"]
