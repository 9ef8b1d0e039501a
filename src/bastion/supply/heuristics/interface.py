"""What the analysis of one Python file produces: signals, per scope, and the call graph.

A :class:`Signal` is one thing a line does that matters for malice (a network call, a
credential read, an ``exec`` of decoded data), in the scope it runs in: ``"<module>"`` for
code that runs on import (module and class bodies), ``"<main>"`` for the body of an
``if __name__ == "__main__":`` guard, else the function's qualified name
(``Class.method``, ``outer.inner``). :class:`ModuleFacts` gathers a file's signals with the
calls between its own functions, which :mod:`.verdicts` uses to grade co-occurrence.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from enum import StrEnum

from bastion.supply.heuristics.resolve import Resolver

#: Python sources larger than this are not parsed (a finding says so).
MAX_SOURCE = 2 << 20
MODULE = "<module>"
#: Code under ``if __name__ == "__main__":`` runs when the file is run, not imported.
MAIN = "<main>"


class Sig(StrEnum):
    NETWORK = "network"
    DNS = "dns"
    SECRET_NAME = "secret-name"  # noqa: S105 (the name of a signal, not a password)
    ENV_BULK = "env-bulk"
    ENV_SECRET = "env-secret"  # noqa: S105
    ENV_DYNAMIC = "env-dynamic"
    CRED_FILE = "credential-file"
    CRED_STORE = "credential-store"
    METADATA = "cloud-metadata"
    WEBHOOK = "exfil-endpoint"
    EXEC = "exec"
    EXEC_DECODED = "exec-decoded"
    EXEC_DOWNLOADED = "exec-downloaded"
    SHELL = "shell"
    SHELL_DYNAMIC = "shell-computed"
    SHELL_BUILD = "shell-build"
    FILE_WRITE = "file-write"
    CHMOD = "chmod"
    DYN_IMPORT = "dynamic-import"
    BUILTINS_TRICK = "builtins-trick"
    BLOB = "encoded-blob"
    HIDDEN = "hidden-code"


@dataclass(frozen=True)
class Signal:
    kind: Sig
    line: int
    scope: str
    detail: str


@dataclass
class ModuleFacts:
    """What one file does, by scope; ``problem`` says why it could not be analysed."""

    signals: list[Signal] = field(default_factory=list)
    #: scope → the module's own functions and methods it calls (qualified like scopes).
    calls: dict[str, set[str]] = field(default_factory=dict)
    scopes: set[str] = field(default_factory=lambda: {MODULE})
    #: class name → (base class names as resolved, method scopes)
    classes: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    tree: ast.Module | None = None
    resolver: Resolver | None = None
    problem: str | None = None

    def in_scopes(self, scopes: set[str]) -> list[Signal]:
        return [s for s in self.signals if s.scope in scopes]

    def line(self, number: int) -> str:
        return self.lines[number - 1].strip() if 0 < number <= len(self.lines) else ""


def parse(text: str) -> tuple[ast.Module | None, str | None]:
    """The tree, or why there is none (syntax error, nesting too deep, NUL bytes)."""
    try:
        return ast.parse(text), None
    except SyntaxError as exc:
        return None, f"does not parse as Python 3 (line {exc.lineno}: {exc.msg})"
    except (RecursionError, MemoryError):
        return None, "nested too deeply to parse"
    except (ValueError, OverflowError) as exc:
        return None, f"cannot be parsed: {exc}"
