"""The ``bastion`` command: one Typer app (:mod:`bastion.cli.commands`), one module per subcommand.

Exit codes, for every command: 0 passed, 1 findings at or above the threshold, 2 usage or
operational error (a missing path, a bad policy). Errors are one clear message, never a
traceback (set ``BASTION_DEBUG=1`` to see one).

``bastion scan`` with plain options takes a fast path (:mod:`bastion.cli.fast`) that skips
importing Typer: start-up is most of the cost of gating one large checkpoint.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typer import Typer

    app: Typer


def main() -> None:
    from bastion.cli.fast import optional_values, run_fast

    argv = optional_values(sys.argv[1:])
    code = run_fast(argv)
    if code is not None:
        sys.exit(code)
    from bastion.cli.commands import app

    app(args=argv)


def __getattr__(name: str) -> Any:
    if name == "app":
        from bastion.cli.commands import app

        return app
    raise AttributeError(f"module 'bastion.cli' has no attribute {name!r}")
