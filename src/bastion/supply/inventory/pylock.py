"""``pylock.toml`` / ``pylock.*.toml``: the standard lock file of PEP 751.

Layout: ``lock-version``, then ``[[packages]]`` with ``name``, an optional ``version``,
``marker``, and where it comes from: ``wheels`` / ``sdist`` / ``archive`` (each with a
``hashes`` table), ``vcs`` or ``directory``. A package without a version cannot be matched.
"""

from __future__ import annotations

from typing import Any

from bastion.findings import clip
from bastion.supply.inventory.interface import (
    MAX_DEPENDENCIES,
    Dependency,
    Inventory,
    SkipKind,
    SkippedDependency,
    broken,
    items,
    name_lines,
    next_line,
    normalize,
    parse_toml,
    table,
    too_large,
)
from bastion.supply.names import manifest_kind


class PylockReader:
    kind = "pylock"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        parsed = parse_toml(data, source, self.kind, truncated)
        if isinstance(parsed, Inventory):
            return parsed
        doc, lines = parsed
        if "lock-version" not in doc:
            return Inventory(source, self.kind, skipped=(broken(
                source, "no 'lock-version' key: not a PEP 751 lock file"),))
        index = name_lines(lines)
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        packages = items(doc.get("packages"))
        for entry in packages[:MAX_DEPENDENCIES]:
            _package(table(entry), source, index, deps, skipped)
        if len(packages) > MAX_DEPENDENCIES:
            skipped.append(too_large(source, f"more than {MAX_DEPENDENCIES} packages"))
        return Inventory(source, self.kind, tuple(deps), tuple(skipped), hashes_expected=True)


def _hashed(entry: dict[str, Any]) -> bool:
    artifacts = [*items(entry.get("wheels")), entry.get("sdist"), entry.get("archive")]
    return any(table(table(a).get("hashes")) for a in artifacts)


def _package(entry: dict[str, Any], source: str, index: dict[str, list[int]],
             deps: list[Dependency], skipped: list[SkippedDependency]) -> None:
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str):
        skipped.append(SkippedDependency(source, None, clip(repr(entry), 120),
                                         "package entry without a name"))
        return
    line = next_line(index, normalize(name))
    if "directory" in entry or not isinstance(version, str):
        skipped.append(SkippedDependency(source, line, name, "local folder, or no version "
                                         "recorded: nothing to match", SkipKind.NOT_AUDITABLE))
        return
    marker = entry.get("marker")
    deps.append(Dependency(name=normalize(name), version=version, specifier=f"=={version}",
                           pinned=True, source=source, line=line, hashes=_hashed(entry),
                           markers=marker if isinstance(marker, str) else None,
                           raw=f"{name} {version}", display_name=name))
