"""What every reporting command shares: options, policy loading, output and error handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from bastion.cli.base import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    emit,
    exit_code,
    output_closed,
    progress_reporter,
    resolve_policy,
    stderr_console,
    unexpected,
    write_atomic,
    write_output,
)
from bastion.errors import BastionError
from bastion.findings import Severity
from bastion.report import Format

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
    except BrokenPipeError:
        raise typer.Exit(output_closed()) from None
    except Exception as exc:  # unanticipated: a missing extra, or a bug said plainly
        fail(*unexpected(exc))


__all__ = ["EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "FAIL_ON", "FORMAT", "OUTPUT", "POLICY",
           "QUIET", "Severity", "emit", "exit_code", "fail", "guarded", "progress_reporter",
           "resolve_policy", "stderr_console", "write_atomic", "write_output"]
