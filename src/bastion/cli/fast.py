"""The fast paths of ``bastion scan`` and ``bastion sign``: the same commands, parsed
without importing Typer.

A CI gate or pre-commit hook that scans one large checkpoint spends most of its time starting
up, and Typer's import is the largest part of that; signing a model is hashing-bound, and
every millisecond before the first byte is read is lost. When the arguments are only paths and
the plain options (for ``scan``: ``--format``, ``--output``, ``--policy``, ``--fail-on``,
``--quiet`` and their environment variables; for ``sign``: a key and the hashing options),
this parses them directly and runs the very same functions the Typer command runs. Anything
else (``--help``, an unknown option, an invalid value, certificate or Sigstore signing)
returns None and the Typer app handles it, with its usual messages. ``tests/test_cli_fast.py``
runs both paths on the same inputs and compares their output.

This module imports nothing heavy at the top: ``bastion sign`` starts hashing before
``cryptography`` or the report code is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from pathlib import Path

    from bastion.findings import Severity
    from bastion.report import Format

EXIT_ERROR = 2  # bastion.cli.base.EXIT_ERROR, without importing it

_VALUE_OPTIONS = {"-f": "format", "--format": "format", "-o": "output", "--output": "output",
                  "-p": "policy", "--policy": "policy", "--fail-on": "fail_on"}
_ENV = {"format": "BASTION_FORMAT", "output": "BASTION_OUTPUT", "policy": "BASTION_POLICY",
        "fail_on": "BASTION_FAIL_ON"}
#: Bulk-scan settings from the environment: the Typer command handles those.
_BULK_ENV = ("BASTION_CACHE", "BASTION_JOBS", "BASTION_RAY")
_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f", ""}


_QUIET = {"-q": "quiet", "--quiet": "quiet"}
_NONE: Mapping[str, str] = {}
_Parsed = tuple[list[str], dict[str, str], dict[str, list[str]], set[str]]


def _parse(args: Sequence[str], values: Mapping[str, str], lists: Mapping[str, str] = _NONE,
           flags: Mapping[str, str] = _QUIET) -> _Parsed | None:
    """Paths, option values (the last one given wins, as in Click), repeatable options'
    lists and flags, by the option names given; None for anything else (``--help``, an
    unknown option, a missing value, a combined short flag): Typer's job."""
    paths: list[str] = []
    got: dict[str, str] = {}
    listed: dict[str, list[str]] = {name: [] for name in lists.values()}
    seen: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        key, inline = arg, None
        if arg.startswith("--") and "=" in arg:
            key, inline = arg.split("=", 1)
        if arg in flags:
            seen.add(flags[arg])
        elif key in values or key in lists:
            if inline is None:
                if i + 1 >= len(args):
                    return None
                i += 1
                inline = args[i]
            if key in lists:
                listed[lists[key]].append(inline)
            else:
                got[values[key]] = inline
        elif arg.startswith("-"):
            return None
        else:
            paths.append(arg)
        i += 1
    return paths, got, listed, seen


def _env_quiet(quiet: bool) -> bool | None:
    """``--quiet`` or ``BASTION_QUIET``; None for a value Typer would refuse."""
    env_quiet = os.environ.get("BASTION_QUIET")
    if env_quiet is not None and not quiet:
        if env_quiet.lower() not in _TRUE | _FALSE:
            return None
        return env_quiet.lower() in _TRUE
    return quiet


def run_fast(argv: Sequence[str]) -> int | None:
    """The exit code of ``bastion scan|sign ...``, or None when Typer should handle it."""
    if argv and argv[0] == "sign":
        return _sign_fast(argv[1:])
    if argv and argv[0] == "verify":
        return _verify_fast(argv[1:])
    if not argv or argv[0] != "scan":
        return None
    parsed = _parse(argv[1:], _VALUE_OPTIONS)
    if parsed is None or not parsed[0] or any(os.environ.get(env) for env in _BULK_ENV):
        return None
    paths, values, _, flags = parsed
    reporting = _reporting(values, flags)
    if reporting is None:
        return None
    fmt, fail_on, quiet = reporting
    return _guarded(lambda: _scan(paths, fmt, _path(values, "output"),
                                  _path(values, "policy"), fail_on, quiet))


def _reporting(values: dict[str, str], flags: set[str]) -> tuple[Format, Severity | None,
                                                                 bool] | None:
    """``--format``, ``--fail-on`` and ``--quiet``, or their environment variables (which
    also fill ``values`` for ``--output`` and ``--policy``), as Typer reads them; None for
    a value Typer should refuse with its own message (it lists the choices)."""
    for key, env in _ENV.items():
        if key not in values and os.environ.get(env):
            values[key] = os.environ[env]
    quiet = _env_quiet("quiet" in flags)
    if quiet is None:
        return None
    from bastion.findings import Severity
    from bastion.report import Format

    try:
        fmt = Format(values.get("format", "terminal").lower())
        fail_on = Severity(values["fail_on"].lower()) if "fail_on" in values else None
    except ValueError:
        return None
    return fmt, fail_on, quiet


def _path(values: dict[str, str], key: str) -> Path | None:
    from pathlib import Path  # imported here: ``bastion verify`` starts hashing before it

    return Path(values[key]) if key in values else None


def _guarded(work: Callable[[], int]) -> int:
    """``work``'s exit code, or one clear error line and exit 2, never a traceback (as
    :func:`bastion.cli.common.guarded` does for the Typer commands)."""
    from bastion.errors import BastionError

    try:
        return work()
    except BastionError as exc:
        return _error(exc.message, exc.hint)
    except KeyboardInterrupt:
        return _error("interrupted", None, 130)
    except BrokenPipeError:
        from bastion.cli.base import output_closed

        return output_closed()
    except Exception as exc:  # unanticipated: a missing extra, or a bug said plainly
        from bastion.cli.base import unexpected

        return _error(*unexpected(exc))


def _scan(paths: list[str], fmt: Format, output: Path | None, policy_file: Path | None,
          fail_on: Severity | None, quiet: bool) -> int:
    from bastion.cli.base import emit, exit_code, progress_reporter, resolve_policy
    from bastion.engine import scan_paths

    policy, source = resolve_policy(policy_file, fail_on)
    update, stop = progress_reporter(quiet)
    try:
        report = scan_paths(paths, policy, policy_source=source, progress=update)
    finally:
        stop()
    emit(report, fmt, output, quiet)
    return exit_code(report)


#: ``bastion sign`` options: those taking a value (the repeatable one a list), and flags.
_SIGN_VALUES = {"-k": "key", "--key": "key", "-o": "output", "--output": "output",
                "--method": "method", "--hash": "hash", "--shard-size": "shard_size",
                "--workers": "workers", "--password-env": "password_env"}
_SIGN_LISTS = {"--ignore": "ignore"}
_SIGN_FLAGS = {**_QUIET, "--include-git": "include-git"}
def _positive(text: str | None) -> int | None:
    if text is None:
        return None
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise ValueError(text)
    return value


def _sign_fast(args: Sequence[str]) -> int | None:
    """``bastion sign PATH --key KEY [hashing options]``: hashing starts before the heavy
    imports (see :func:`bastion.sign.interface.sign_model`)."""
    parsed = _parse(args, _SIGN_VALUES, _SIGN_LISTS, _SIGN_FLAGS)
    if parsed is None or len(parsed[0]) != 1 or "key" not in parsed[1]:
        return None
    (path,), values, lists, flags = parsed
    from bastion.sign.manifest import HASH_TYPES, METHODS

    quiet = _env_quiet("quiet" in flags)
    if quiet is None or values.get("method", METHODS[0]) not in METHODS \
            or values.get("hash", HASH_TYPES[0]) not in HASH_TYPES:
        return None
    try:
        shard_size = _positive(values.get("shard_size"))
        workers = _positive(values.get("workers"))
    except ValueError:
        return None
    from bastion.cli.signing import password_from_env, signed_lines
    from bastion.sign.hashing import favour_hashing
    from bastion.sign.interface import Options, sign_model

    def work() -> int:
        favour_hashing()
        default = Options()
        options = Options(values.get("method", default.method),
                          values.get("hash", default.hash_type),
                          shard_size or default.shard_size, tuple(lists["ignore"]),
                          "include-git" not in flags, workers, processes=True)
        done = sign_model(path, values["key"], output=values.get("output"),
                          password=password_from_env(values.get("password_env")),
                          options=options)
        if not quiet:
            sys.stderr.write("".join(line + "\n" for line in signed_lines(done)))
        return 0

    return _guarded(work)


#: ``bastion verify`` options taking a value; those repeatable collect a list.
_VERIFY_VALUES = {"-s": "signature", "--signature": "signature", "--workers": "workers",
                  "--identity": "identity", **_VALUE_OPTIONS}
_VERIFY_LISTS = {"-k": "key", "--key": "key", "--cert-chain": "cert_chain"}


def _verify_fast(args: Sequence[str]) -> int | None:
    """``bastion verify PATH [--key PUB] ...``: hashing starts from the signature's own
    settings while the keys, the policy and the report code load (see
    :func:`bastion.sign.early.start_early`); the verification proper decides."""
    parsed = _parse(args, _VERIFY_VALUES, _VERIFY_LISTS)
    if parsed is None or len(parsed[0]) != 1:
        return None
    (path,), values, lists, flags = parsed
    try:
        workers = _positive(values.get("workers"))
    except ValueError:
        return None
    from bastion.sign.early import start_early
    from bastion.sign.hashing import favour_hashing
    from bastion.sign.manifest import default_signature_name

    early = None
    given = values.get("signature")
    if os.path.lexists(path) and (given is None or os.path.isfile(given)):
        favour_hashing()
        early = start_early(path, given or default_signature_name(path), workers,
                            processes=True)
    try:
        reporting = _reporting(values, flags)
        if reporting is None:
            return None
        fmt, fail_on, quiet = reporting

        def work() -> int:
            from pathlib import Path

            from bastion.cli.base import emit, exit_code, resolve_policy
            from bastion.cli.signing import trust_from_options, verify_report

            model, signature = Path(path), _path(values, "signature")
            policy, source = resolve_policy(_path(values, "policy"), fail_on)
            trust = trust_from_options(lists["key"], [Path(c) for c in lists["cert_chain"]],
                                       values.get("identity"), False, None, False, policy)
            report = verify_report(model, signature, trust, policy, source, workers, early)
            emit(report, fmt, _path(values, "output"), quiet)
            return exit_code(report)

        return _guarded(work)
    finally:
        if early is not None:
            early.cancel()  # a no-op once the verification has used it


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
