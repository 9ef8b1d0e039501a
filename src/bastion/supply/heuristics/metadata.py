"""Package metadata files: names, console scripts, build backends, wheel tags.

Read as text within bounds: ``PKG-INFO``/``METADATA`` headers (the project's name),
``entry_points.txt`` and ``setup.cfg`` (INI, console scripts), ``pyproject.toml``
(``[build-system]``, ``[project.scripts]``, ``[tool.setuptools.cmdclass]``) and ``WHEEL``
(``Root-Is-Purelib``, tags). Every failure to parse is an empty answer, never an exception.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bastion.findings import Finding, Location, Severity
from bastion.supply.heuristics import patterns, rules
from bastion.supply.heuristics.interface import ModuleFacts
from bastion.supply.heuristics.setup_py import INSTALL_COMMANDS
from bastion.supply.heuristics.verdicts import STRONG
from bastion.supply.inventory.installed import parse_headers
from bastion.supply.inventory.interface import line_of, normalize

#: Largest metadata file read (a PKG-INFO carries the long description after its headers).
MAX_METADATA = 1 << 20


@dataclass(frozen=True)
class Script:
    command: str
    target: str
    line: int | None


@dataclass
class Pyproject:
    name: tuple[str, int | None] | None = None
    backend: str | None = None
    backend_path: list[str] = field(default_factory=list)
    backend_line: int | None = None
    scripts: list[Script] = field(default_factory=list)
    cmdclass: dict[str, str] = field(default_factory=dict)
    cmdclass_line: int | None = None


def text_of(data: bytes) -> str:
    return data[:MAX_METADATA].decode("utf-8", "replace")


def header_name(data: bytes) -> tuple[str, int] | None:
    """``Name:`` of core metadata (PKG-INFO, METADATA) and its line."""
    found = parse_headers(text_of(data)).get("name")
    return (found[0], found[1]) if found else None


def requirements(data: bytes) -> list[tuple[str, int]]:
    """``Requires-Dist`` names of core metadata, with their lines (headers only)."""
    found: list[tuple[str, int]] = []
    for number, line in enumerate(text_of(data).splitlines(), 1):
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "requires-dist":
            match = _REQUIREMENT_NAME.match(value.strip())
            if match:
                found.append((match.group(0), number))
    return found[:2000]


_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def wheel_is_pure(data: bytes) -> bool:
    """WHEEL says ``Root-Is-Purelib: true`` and every tag is platform ``any``."""
    headers = parse_headers(text_of(data))
    pure = headers.get("root-is-purelib", ("", 0))[0].strip().lower() == "true"
    tags = [line.split(":", 1)[1].strip() for line in text_of(data).splitlines()
            if line.lower().startswith("tag:")]
    return pure and all(t.endswith("-any") for t in tags)


def ini_scripts(data: bytes) -> list[Script]:
    """Console and GUI scripts of an ``entry_points.txt`` or a ``setup.cfg``."""
    text = text_of(data)
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except (configparser.Error, ValueError):
        return []
    lines = text.splitlines()
    found: list[Script] = []
    for section in ("console_scripts", "gui_scripts", "options.entry_points"):
        if not parser.has_section(section):
            continue
        items = parser.items(section)
        if section == "options.entry_points":
            items = [item for key, value in items if key in ("console_scripts", "gui_scripts")
                     for item in _ini_lines(value)]
        for command, target in items[:1000]:
            found.append(Script(command.strip(), target.strip(),
                                _line_of_key(lines, command.strip())))
    return found


def _ini_lines(value: str) -> list[tuple[str, str]]:
    out = []
    for line in value.splitlines():
        command, sep, target = line.partition("=")
        if sep and command.strip():
            out.append((command.strip(), target.strip()))
    return out


def _line_of_key(lines: list[str], key: str) -> int | None:
    for number, line in enumerate(lines, 1):
        if line.strip().startswith(key) and "=" in line:
            return number
    return None


def cfg_name(data: bytes) -> tuple[str, int | None] | None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text_of(data))
        name = parser.get("metadata", "name", fallback=None)
    except (configparser.Error, ValueError):
        return None
    if not name:
        return None
    return name.strip(), _line_of_key(text_of(data).splitlines(), "name")


def read_pyproject(data: bytes) -> Pyproject:
    text = text_of(data)
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):
        return Pyproject()
    lines = text.splitlines()
    out = Pyproject()
    project = _table(doc.get("project"))
    if isinstance(project.get("name"), str):
        out.name = (project["name"], line_of(lines, "name"))
    build = _table(doc.get("build-system"))
    if isinstance(build.get("build-backend"), str):
        out.backend = build["build-backend"]
        out.backend_line = line_of(lines, "build-backend")
        paths = build.get("backend-path")
        out.backend_path = [p for p in paths if isinstance(p, str)] if isinstance(
            paths, list) else []
    for group in ("scripts", "gui-scripts"):
        for command, target in _table(project.get(group)).items():
            if isinstance(target, str):
                out.scripts.append(Script(command, target, line_of(lines, command)))
    cmdclass = _table(_table(_table(doc.get("tool")).get("setuptools")).get("cmdclass"))
    out.cmdclass = {k: v for k, v in cmdclass.items() if isinstance(v, str)}
    out.cmdclass_line = line_of(lines, "cmdclass") if out.cmdclass else None
    return out


def _table(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def shadow_findings(scripts: list[Script], where: Location, shown: str,
                    package: str | None) -> Iterator[Finding]:
    """Console scripts named like common commands."""
    owner = normalize(package) if package else None
    for script in scripts:
        if patterns.shadowed(script.command, owner):
            line = script.line
            yield rules.ENTRY_POINT_SHADOW.finding(
                where.at(line=line) if line else where,
                f"installs a command named {script.command!r} (runs {script.target}), "
                "shadowing the common command of that name",
                evidence=f"{shown}:{line or '?'}: {script.command} = {script.target}",
                properties={"command": script.command, "target": script.target})


#: Finds the facts of a package file by its path inside the package (None when absent).
Lookup = Callable[[str], ModuleFacts | None]


def backend_findings(pyproject: Pyproject, where: Location, shown: str, lookup: Lookup,
                     project: str | None) -> Iterator[Finding]:
    """An in-tree build backend (``backend-path``) runs the package's own code on install."""
    if pyproject.backend is not None and pyproject.backend_path:
        module = pyproject.backend.split(":", 1)[0]
        top = module.split(".", 1)[0]
        if project and normalize(top) == normalize(project):
            return  # a build backend building itself (setuptools, flit_core, hatchling)
        files = [f"{base.strip('./')}/{module.replace('.', '/')}{suffix}".lstrip("/")
                 for base in pyproject.backend_path for suffix in (".py", "/__init__.py")]
        strong = []
        for path in files:
            facts = lookup(path)
            if facts is not None:
                strong = [s for s in facts.signals if s.kind in STRONG]
                break
        kinds = ", ".join(dict.fromkeys(s.kind.value for s in strong))
        line = pyproject.backend_line
        yield rules.INSTALL_HOOK.finding(
            where.at(line=line) if line else where,
            f"the build backend {pyproject.backend!r} is loaded from the package itself "
            f"(backend-path {pyproject.backend_path})"
            + (f"; it does: {kinds}" if strong else ""),
            evidence=f"{shown}:{line or '?'}: build-backend = {pyproject.backend!r}",
            severity=Severity.HIGH if strong else Severity.LOW,
            properties={"backend": pyproject.backend, "backend_path": pyproject.backend_path})
    for command, target in list(pyproject.cmdclass.items())[:50]:
        if command not in INSTALL_COMMANDS:
            continue  # build_ext and friends: how extensions are compiled
        line = pyproject.cmdclass_line
        yield rules.INSTALL_HOOK.finding(
            where.at(line=line) if line else where,
            f"[tool.setuptools.cmdclass] replaces the {command!r} command with {target}",
            evidence=f"{shown}:{line or '?'}: {command} = {target!r}", severity=Severity.LOW,
            properties={"command": command, "target": target})
