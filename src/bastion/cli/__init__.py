"""The ``bastion`` command: one Typer app (:mod:`bastion.cli.commands`), one module per subcommand.

Exit codes, for every command: 0 passed, 1 findings at or above the threshold, 2 usage or
operational error (a missing path, a bad policy). Errors are one clear message, never a
traceback (set ``BASTION_DEBUG=1`` to see one).

``bastion scan`` with plain options takes a fast path (:mod:`bastion.cli.fast`) that skips
importing Typer: start-up is most of the cost of gating one large checkpoint.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from typer import Typer

    app: Typer


def main() -> None:
    """The program's entry point (console script, ``python -m bastion``): it ends the
    process, a fast-path command (``scan``, ``sign``, ``verify``) without the interpreter's
    teardown (see :func:`_exit_now`). Embed the CLI through ``bastion.cli.app`` instead."""
    from bastion.cli.fast import optional_values, run_fast

    argv = optional_values(sys.argv[1:])
    code = run_fast(argv)
    if code is not None:
        _exit_now(code)
    from bastion.cli.commands import app

    app(args=argv)


def _exit_now(code: int) -> None:
    """End a fast-path command at once: its output is written and its files closed, and
    the interpreter's own teardown (every module's objects freed one by one) would add
    ~10 ms to a command whose whole point is to be quick (measured on ``bastion verify``:
    73 ms a small model, 53 of them the command). Standard streams are flushed and
    ``atexit`` handlers run first, as a normal exit would."""
    import atexit
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or stream: nothing to add
            pass
    atexit._run_exitfuncs()
    os._exit(code)


def __getattr__(name: str) -> Any:
    if name == "app":
        from bastion.cli.commands import app

        return app
    raise AttributeError(f"module 'bastion.cli' has no attribute {name!r}")
