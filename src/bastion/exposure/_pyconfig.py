"""Traitlets configuration files (``jupyter_server_config.py``) read as syntax, never run.

A Jupyter config file is Python that assigns ``c.Section.option = value``. Importing or
executing it would run whatever else it holds, so it is parsed with :mod:`ast` and only the
assignments whose value is a literal are kept (:func:`ast.literal_eval` evaluates literals
only). A value computed at run time (``os.environ["TOKEN"]``) is kept as :data:`UNKNOWN`:
Bastion cannot tell what it will be, and does not guess.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

#: Larger files are not read.
MAX_BYTES = 1 << 20
#: Assignments kept per file.
MAX_SETTINGS = 10_000


class _Unknown:
    """A value computed at run time."""

    def __repr__(self) -> str:
        return "<computed at run time>"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True, slots=True)
class Setting:
    value: Any
    line: int
    source: str  # the assignment as written, for evidence


class ConfigError(ValueError):
    """Not Python Bastion will read."""


def parse(text: str) -> dict[tuple[str, str], Setting]:
    """``(section, option) -> Setting`` for every ``c.Section.option = ...`` (last one wins).

    Raises :class:`ConfigError` when the text is too large or not Python.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{len(text)} characters is over the {MAX_BYTES} limit")
    try:
        tree = ast.parse(text, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ConfigError(f"not valid Python: {type(exc).__name__}: {exc}") from None
    lines = text.splitlines()
    settings: dict[tuple[str, str], Setting] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            key = _config_key(target)
            if key is None:
                continue
            if key not in settings and len(settings) >= MAX_SETTINGS:
                raise ConfigError(f"more than {MAX_SETTINGS} settings")
            line = lines[node.lineno - 1].strip() if 0 < node.lineno <= len(lines) else ""
            settings[key] = Setting(_literal(value), node.lineno, line)
    return settings


def _config_key(target: ast.expr) -> tuple[str, str] | None:
    """``c.Section.option`` (any name for ``c``) as ``(Section, option)``."""
    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
            and isinstance(target.value.value, ast.Name)):
        return target.value.attr, target.attr
    return None


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return UNKNOWN
