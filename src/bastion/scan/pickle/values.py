"""Symbolic values of the pickle machine: descriptions of what a loader would build.

Nothing here is ever a real object from the stream; containers keep a bounded number of items
for evidence and for the few states (joblib array wrappers, dtypes) the machine must read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KEEP_BYTES = 1 << 20  # payloads up to this size are kept whole (nested pickles)
PREVIEW = 256  # bytes kept of larger payloads
LINE_LIMIT = 16 << 20  # longest protocol-0 argument line
KEEP_ITEMS = 256  # container items kept for previews and joblib state


class Malformed(Exception):
    """The stream is not a valid pickle at this point."""


# -- symbolic values ----------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Const:
    value: Any
    truncated: bool = False


@dataclass(eq=False, slots=True)
class Global:
    module: str
    name: str
    offset: int

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False, slots=True)
class Call:
    func: Any
    args: Any
    offset: int
    kwargs: Any = None
    state: Any = None


@dataclass(eq=False, slots=True)
class Seq:
    kind: str  # tuple, list, set, frozenset
    items: list[Any]
    length: int

    def add(self, values: Iterable[Any]) -> None:
        for value in values:
            self.length += 1
            if len(self.items) < KEEP_ITEMS:
                self.items.append(value)


@dataclass(eq=False, slots=True)
class DictV:
    items: list[tuple[Any, Any]]
    length: int

    def set(self, key: Any, value: Any) -> None:
        self.length += 1
        if len(self.items) < KEEP_ITEMS:
            self.items.append((key, value))

    def get(self, key: str) -> Any:
        for k, v in self.items:
            if isinstance(k, Const) and k.value == key:
                return v
        return None


@dataclass(eq=False, slots=True)
class PersId:
    pid: Any


@dataclass(eq=False, slots=True)
class Opaque:
    what: str


class _Mark:
    pass


MARK = _Mark()


def _tuple(items: list[Any]) -> Seq:
    return Seq("tuple", items[:KEEP_ITEMS], len(items))


# -- rendering ----------------------------------------------------------------------------------


def render(value: Any, depth: int = 0, budget: list[int] | None = None) -> str:
    """A short Python-like text for a symbolic value, for evidence."""
    budget = budget if budget is not None else [40]
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        return "…"
    if isinstance(value, Const):
        text = repr(value.value)
        if len(text) > 200:
            text = text[:200] + "…"
        return text + ("…" if value.truncated else "")
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Call):
        return f"{render(value.func, depth + 1, budget)}({_args(value.args, depth, budget)})"
    if isinstance(value, Seq):
        inner = ", ".join(render(v, depth + 1, budget) for v in value.items[:8])
        more = ", …" if value.length > 8 else ""
        if value.kind == "tuple":
            return f"({inner}{more}{',' if value.length == 1 else ''})"
        if value.kind == "list":
            return f"[{inner}{more}]"
        return f"{value.kind}({{{inner}{more}}})"
    if isinstance(value, DictV):
        inner = ", ".join(f"{render(k, depth + 1, budget)}: {render(v, depth + 1, budget)}"
                          for k, v in value.items[:8])
        return "{" + inner + (", …" if value.length > 8 else "") + "}"
    if isinstance(value, PersId):
        return f"persistent_id({render(value.pid, depth + 1, budget)})"
    if isinstance(value, Opaque):
        return f"<{value.what}>"
    return "?"


def _args(args: Any, depth: int, budget: list[int]) -> str:
    if isinstance(args, Seq) and args.kind == "tuple":
        inner = ", ".join(render(v, depth + 1, budget) for v in args.items[:8])
        return inner + (", …" if args.length > 8 else "")
    return "*" + render(args, depth + 1, budget)


@dataclass
class Issue:
    kind: str  # malformed, dynamic-global, dynamic-call, extension, global-build, too-complex,
    #           nested-pickle
    offset: int
    message: str
    evidence: str | None = None
