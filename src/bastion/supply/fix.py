"""Fixes: the smallest upgrade that clears every advisory, and rewriting a requirements file.

The candidates are the versions the advisories themselves name (``fixed`` events and the
``versions`` lists); the smallest one above the current version that no advisory of the
package affects is the fix. When none exists the suggestion says so, rather than guessing.
Rewriting keeps comments, markers, extras and options; a changed pin's ``--hash`` options no
longer match and are removed (the caller warns). The file is replaced atomically.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from bastion.files import replace_atomic
from bastion.supply.advisories.osv import Advisory
from bastion.supply.inventory.requirements import logical_lines
from bastion.supply.match import advisory_affects, pep440

_HASH = re.compile(r"\s*--hash[=\s]\s*\S+")


@dataclass(frozen=True)
class Fix:
    """The upgrade for one package: the version, or None with the reason."""

    version: str | None
    reason: str = ""


def _fixed_above(advisory: Advisory, name: str, current: Version) -> list[Version]:
    found = []
    for entry in advisory.for_package(name):
        for rng in entry.ranges:
            for event in rng.events:
                parsed = pep440(event.version) if event.kind == "fixed" else None
                if parsed is not None and parsed > current:
                    found.append(parsed)
    return found


def smallest_fix(name: str, version: str, advisories: Sequence[Advisory],
                 affecting: Sequence[Advisory] = ()) -> Fix:
    """The smallest version above ``version`` that no advisory of the package affects.

    ``affecting`` (the advisories that affect ``version``) only speeds the search up: no fix
    can lie below the first ``fixed`` version of each of them.
    """
    current = pep440(version)
    if current is None:
        return Fix(None, f"version {version!r} is not a PEP 440 version; cannot order upgrades")
    floor = current
    for advisory in affecting:
        fixed = _fixed_above(advisory, name, current)
        if fixed:
            floor = max(floor, min(fixed))
    candidates: set[Version] = set()
    for advisory in advisories:
        candidates.update(_fixed_above(advisory, name, current))
        for entry in advisory.for_package(name):
            for text in entry.versions:
                parsed = pep440(text)
                if parsed is not None and parsed > current:
                    candidates.add(parsed)
    candidates = {c for c in candidates if c >= floor}
    if not current.is_prerelease:
        candidates = {c for c in candidates if not c.is_prerelease}
    for candidate in sorted(candidates):
        if not any(advisory_affects(a, name, str(candidate)) is not False for a in advisories):
            return Fix(str(candidate))
    return Fix(None, "no released version is known to fix every advisory")


@dataclass(frozen=True)
class Edit:
    """Change the pin of the requirement whose logical line starts at ``line``."""

    line: int
    old: str
    new: str


@dataclass(frozen=True)
class Rewrite:
    text: str
    applied: tuple[Edit, ...]
    missed: tuple[Edit, ...]
    #: Lines whose ``--hash`` options were removed because the pin changed.
    unhashed: tuple[int, ...]


def rewrite(text: str, edits: Sequence[Edit]) -> Rewrite:
    """The requirements text with each edit's pin changed; comments and options kept."""
    by_line = {e.line: e for e in edits}
    physical = text.splitlines(keepends=True)
    applied: list[Edit] = []
    unhashed: list[int] = []
    for logical in logical_lines(text):
        edit = by_line.get(logical.start)
        if edit is None:
            continue
        span = physical[logical.start - 1:logical.end]
        changed = _repin(span, edit)
        if changed is None:
            continue
        if any(_HASH.search(line) for line in changed):
            changed = _drop_hashes(changed)
            unhashed.append(logical.start)
        physical[logical.start - 1:logical.end] = changed + [""] * (len(span) - len(changed))
        applied.append(edit)
    missed = tuple(e for e in edits if e not in applied)
    return Rewrite("".join(physical), tuple(applied), missed, tuple(unhashed))


def _repin(span: list[str], edit: Edit) -> list[str] | None:
    pattern = re.compile(rf"(?<![<>!~=])(===?)(\s*){re.escape(edit.old)}(?=[\s;,\\#]|$)")
    for index, line in enumerate(span):
        body, ending = _split_ending(line)
        new, count = pattern.subn(lambda m: f"{m.group(1)}{m.group(2)}{edit.new}", body, count=1)
        if count:
            return [*span[:index], new + ending, *span[index + 1:]]
    return None


def _split_ending(line: str) -> tuple[str, str]:
    stripped = line.rstrip("\r\n")
    return stripped, line[len(stripped):]


def _drop_hashes(span: list[str]) -> list[str]:
    """Remove ``--hash`` options; drop lines left empty; end the requirement's continuation."""
    kept: list[str] = []
    for line in span:
        body, ending = _split_ending(line)
        cleaned = _HASH.sub("", body)
        if cleaned.strip() in ("", "\\"):
            continue
        kept.append(cleaned + ending)
    if kept:
        body, ending = _split_ending(kept[-1])
        kept[-1] = body.rstrip().removesuffix("\\").rstrip() + (ending or "\n")
    return kept


def unified_diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


def write_atomic(path: Path, text: str) -> None:
    """Replace a file's content without a window where it is half-written; mode is kept."""
    replace_atomic(path, text.encode("utf-8", "surrogateescape"),
                   mode=path.stat().st_mode & 0o7777)
