"""What every inventory reader returns: dependencies, and what it could not audit (as data).

A reader never raises on a broken or hostile manifest: an unparseable line, an editable
install, a URL, a missing include or a truncated file becomes a :class:`SkippedDependency`
with a reason and a :class:`SkipKind`, and the analyzer turns those into findings.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any, Protocol

from packaging.utils import canonicalize_name

#: Most bytes read from one manifest. A 1 GB "requirements file" is read this far, then
#: reported as too large: real lock files of large projects are a few megabytes.
MAX_MANIFEST_BYTES = 16 * 2**20
#: Most logical lines read from one requirements file (includes count separately).
MAX_LINES = 50_000
#: Longest logical line kept; longer ones are reported, not parsed.
MAX_LINE_CHARS = 64 * 2**10
#: Most dependencies kept from one manifest.
MAX_DEPENDENCIES = 50_000


class SkipKind(StrEnum):
    """Why something in a manifest was not audited."""

    INVALID = "invalid"  # a line or entry that does not parse
    NOT_AUDITABLE = "not-auditable"  # URL, VCS, local path, editable: no version to match
    INCLUDE = "include"  # a -r/-c file that is missing, loops or nests too deep
    MANIFEST_INVALID = "manifest-invalid"  # the whole file does not parse
    TOO_LARGE = "too-large"  # the file was cut at a size or count limit


@dataclass(frozen=True)
class Dependency:
    """One requirement or locked package, as written in its manifest."""

    #: PEP 503 normalized name, the key advisories are indexed by.
    name: str
    #: The exact version when pinned (``==1.2``, a lock entry, an installed package).
    version: str | None
    #: The version constraint as written (``>=1.2,<2``; ``==1.2``; empty for none).
    specifier: str
    pinned: bool
    source: str
    line: int | None = None
    markers: str | None = None
    extras: tuple[str, ...] = ()
    hashes: bool = False
    #: The requirement as written (clipped), for evidence and for ``--fix``.
    raw: str = ""
    #: The name as written (for display and rewriting).
    display_name: str = ""
    #: ``"pypi"`` for everything but conda packages (``"conda"``), matched by the same name.
    ecosystem: str = "pypi"
    #: True for a constraints-file entry: it pins a version without requiring the package.
    constraint: bool = False

    @property
    def label(self) -> str:
        shown = self.display_name or self.name
        return f"{shown}=={self.version}" if self.version else f"{shown}{self.specifier}"


@dataclass(frozen=True)
class SkippedDependency:
    """Something in a manifest that was not audited, and why."""

    source: str
    line: int | None
    text: str
    reason: str
    kind: SkipKind = SkipKind.INVALID


@dataclass(frozen=True)
class Inventory:
    """Everything one manifest (and its includes) says the project depends on."""

    source: str
    #: Reader kind: ``"requirements"``, ``"uv.lock"``, ``"installed"``...
    kind: str
    dependencies: tuple[Dependency, ...] = ()
    skipped: tuple[SkippedDependency, ...] = ()
    #: Whether a loose requirement is worth a finding: yes in requirements files and conda
    #: environments (they describe one install), no in library metadata or lock files.
    pins_expected: bool = False
    #: Whether missing hashes are worth a finding: requirements and lock files (pip and uv
    #: can verify them), not conda files, library metadata or installed environments.
    hashes_expected: bool = False
    #: Files read besides ``source`` (``-r`` includes), for display.
    includes: tuple[str, ...] = field(default=())


class Reader(Protocol):
    """A manifest format: recognises its file names and parses bounded bytes."""

    kind: str

    def matches(self, name: str) -> bool:
        """Whether a file of this name is this kind of manifest (names are conventions)."""
        ...

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        """Parse the bytes of one manifest; never raises on bad content."""
        ...


def normalize(name: str) -> str:
    """PEP 503 normalization: the one spelling advisories and manifests are matched by."""
    return str(canonicalize_name(name))


def read_bounded(stream: IO[bytes], limit: int = MAX_MANIFEST_BYTES) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes; the flag says whether the stream had more."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        return data[:limit], True
    return data, False


def decode(data: bytes) -> str:
    """Text of a manifest: UTF-8 (a BOM is dropped), undecodable bytes kept visible."""
    return data.decode("utf-8-sig", errors="surrogateescape")


def too_large(source: str, what: str) -> SkippedDependency:
    return SkippedDependency(source, None, "", what, SkipKind.TOO_LARGE)


def broken(source: str, reason: str, line: int | None = None) -> SkippedDependency:
    return SkippedDependency(source, line, "", reason, SkipKind.MANIFEST_INVALID)


def parse_toml(data: bytes, source: str, kind: str, truncated: bool
               ) -> tuple[dict[str, Any], list[str]] | Inventory:
    """A TOML manifest and its lines, or an inventory holding the one reason it failed."""
    if truncated:
        return Inventory(source, kind, skipped=(too_large(
            source, f"file larger than {MAX_MANIFEST_BYTES} bytes; not audited"),))
    text = decode(data)
    try:
        return tomllib.loads(text), text.splitlines()
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        return Inventory(source, kind, skipped=(broken(source, f"not valid TOML: {exc}"),))


def table(value: Any) -> dict[str, Any]:
    """A TOML/JSON value that should be a table, or an empty one (hostile input)."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[Any]:
    """A TOML/JSON value that should be an array, or an empty one."""
    return value if isinstance(value, list) else []


def name_lines(lines: Sequence[str], key: str = "name") -> dict[str, list[int]]:
    """Line numbers of ``name = "x"`` entries, by normalized name, in file order."""
    pattern = re.compile(rf'^\s*{re.escape(key)}\s*=\s*["\']([^"\']+)["\']')
    found: dict[str, list[int]] = {}
    for number, text in enumerate(lines, 1):
        match = pattern.match(text)
        if match:
            found.setdefault(normalize(match.group(1)), []).append(number)
    return found


def next_line(index: dict[str, list[int]], name: str) -> int | None:
    """Take the next line number recorded for a name (lock files may list a name twice)."""
    numbers = index.get(name)
    return numbers.pop(0) if numbers else None


def line_of(lines: Sequence[str], needle: str, start: int = 0) -> int | None:
    """1-based number of the first line at or after ``start`` (0-based) holding ``needle``.

    TOML, JSON and YAML parsers drop positions; findings still point at a line, found by
    searching the text for the entry's key.
    """
    for index in range(start, len(lines)):
        if needle in lines[index]:
            return index + 1
    return None
