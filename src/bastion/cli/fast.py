"""The fast path of ``bastion scan``: the same command, parsed without importing Typer.

A CI gate or pre-commit hook that scans one large checkpoint spends most of its time starting
up, and Typer's import is the largest part of that. When the arguments are only paths and the
plain options (``--format``, ``--output``, ``--policy``, ``--fail-on``, ``--quiet`` and their
environment variables), this parses them directly and runs the very same functions the Typer
command runs. Anything else (``--help``, an unknown option, an invalid value) returns None and
the Typer app handles it, with its usual messages. ``tests/test_cli_fast.py`` runs both paths
on the same inputs and compares their output.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bastion.cli.base import (
    EXIT_ERROR,
    emit,
    exit_code,
    progress_reporter,
    resolve_policy,
    unexpected,
)
from bastion.findings import Severity
from bastion.report import Format

_VALUE_OPTIONS = {"-f": "format", "--format": "format", "-o": "output", "--output": "output",
                  "-p": "policy", "--policy": "policy", "--fail-on": "fail_on"}
_ENV = {"format": "BASTION_FORMAT", "output": "BASTION_OUTPUT", "policy": "BASTION_POLICY",
        "fail_on": "BASTION_FAIL_ON"}
#: Bulk-scan settings from the environment: the Typer command handles those.
_BULK_ENV = ("BASTION_CACHE", "BASTION_JOBS", "BASTION_RAY")
_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f", ""}


def _parse(args: Sequence[str]) -> tuple[list[str], dict[str, str], bool] | None:
    paths: list[str] = []
    values: dict[str, str] = {}
    quiet = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg in _VALUE_OPTIONS and i + 1 < len(args):
            values[_VALUE_OPTIONS[arg]] = args[i + 1]
            i += 1
        elif arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] in _VALUE_OPTIONS:
            key, value = arg.split("=", 1)
            values[_VALUE_OPTIONS[key]] = value
        elif arg.startswith("-"):
            return None  # --help, --no-..., a combined short flag: Typer's job
        else:
            paths.append(arg)
        i += 1
    return paths, values, quiet


def run_fast(argv: Sequence[str]) -> int | None:
    """The exit code of ``bastion scan ...``, or None when Typer should handle the command."""
    if not argv or argv[0] != "scan":
        return None
    parsed = _parse(argv[1:])
    if parsed is None or not parsed[0] or any(os.environ.get(env) for env in _BULK_ENV):
        return None
    paths, values, quiet = parsed
    for key, env in _ENV.items():
        if key not in values and os.environ.get(env):
            values[key] = os.environ[env]
    env_quiet = os.environ.get("BASTION_QUIET")
    if env_quiet is not None and not quiet:
        if env_quiet.lower() not in _TRUE | _FALSE:
            return None
        quiet = env_quiet.lower() in _TRUE
    try:
        fmt = Format(values.get("format", "terminal").lower())
        fail_on = Severity(values["fail_on"].lower()) if "fail_on" in values else None
    except ValueError:
        return None  # Typer says what the choices are
    output = Path(values["output"]) if "output" in values else None
    policy_file = Path(values["policy"]) if "policy" in values else None
    return _run(paths, fmt, output, policy_file, fail_on, quiet)


def _run(paths: list[str], fmt: Format, output: Path | None, policy_file: Path | None,
         fail_on: Severity | None, quiet: bool) -> int:
    from bastion.errors import BastionError

    try:
        policy, source = resolve_policy(policy_file, fail_on)
        from bastion.engine import scan_paths

        update, stop = progress_reporter(quiet)
        try:
            report = scan_paths(paths, policy, policy_source=source, progress=update)
        finally:
            stop()
        emit(report, fmt, output, quiet)
    except BastionError as exc:
        return _error(exc.message, exc.hint)
    except KeyboardInterrupt:
        return _error("interrupted", None, 130)
    except Exception as exc:  # unanticipated: a missing extra, or a bug said plainly
        return _error(*unexpected(exc))
    return exit_code(report)


def _error(message: str, hint: str | None, code: int = EXIT_ERROR) -> int:
    from bastion.cli.base import stderr_console

    console = stderr_console()
    console.print(f"error: {message}", style="bold red", markup=False, highlight=False)
    if hint:
        console.print(f"  hint: {hint}", markup=False, highlight=False)
    return code


#: Options whose value is optional on the command line: ``--cache`` alone means the default
#: database, ``--ray`` alone ``ray.init()``'s choice. Click has no clean optional value, so
#: :func:`optional_values` rewrites a bare flag as ``--flag=default`` before parsing.
_OPTIONAL_VALUES = {"--cache", "--ray"}


def _is_value(option: str, arg: str) -> bool:
    """Whether ``arg`` after ``option`` is its value rather than a path to scan."""
    import re

    if option == "--cache":
        return "://" in arg
    return re.fullmatch(r"auto|local|default|ray://\S+|[A-Za-z0-9.\-]+:\d{1,5}", arg) is not None


def optional_values(argv: list[str]) -> list[str]:
    """``bastion scan`` arguments with a bare ``--cache``/``--ray`` given its default value
    (``bastion.cli.main`` applies it to the command line before either parser sees it)."""
    if not argv or argv[0] != "scan":
        return argv
    out = [argv[0]]
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in _OPTIONAL_VALUES:
            if i + 1 < len(argv) and _is_value(arg, argv[i + 1]):
                out.extend((arg, argv[i + 1]))
                i += 2
                continue
            out.append(f"{arg}=default")
        else:
            out.append(arg)
        i += 1
    return out
