"""``uv.lock``: uv's TOML lock file, one ``[[package]]`` table per resolved distribution.

Layout (uv docs, "The lockfile"): ``name``, ``version``, ``source`` (``registry``, ``git``,
``url``, ``path``, ``directory``, ``editable`` or ``virtual``), ``sdist`` and ``wheels``
each with a ``hash``. The project itself and local folders have no published version.
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
    items,
    name_lines,
    next_line,
    normalize,
    parse_toml,
    table,
    too_large,
)
from bastion.supply.names import manifest_kind

_LOCAL = ("editable", "virtual", "directory", "path")


class UvLockReader:
    kind = "uv.lock"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        parsed = parse_toml(data, source, self.kind, truncated)
        if isinstance(parsed, Inventory):
            return parsed
        doc, lines = parsed
        index = name_lines(lines)
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        for entry in items(doc.get("package"))[:MAX_DEPENDENCIES]:
            _package(table(entry), source, index, deps, skipped)
        if len(items(doc.get("package"))) > MAX_DEPENDENCIES:
            skipped.append(too_large(source, f"more than {MAX_DEPENDENCIES} packages"))
        return Inventory(source, self.kind, tuple(deps), tuple(skipped), hashes_expected=True)


def _package(entry: dict[str, Any], source: str, index: dict[str, list[int]],
             deps: list[Dependency], skipped: list[SkippedDependency]) -> None:
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str):
        skipped.append(SkippedDependency(source, None, clip(repr(entry), 120),
                                         "package entry without a name"))
        return
    line = next_line(index, normalize(name))
    origin = table(entry.get("source"))
    if any(k in origin for k in _LOCAL) or not isinstance(version, str):
        skipped.append(SkippedDependency(source, line, name, "local project or folder: no "
                                         "published version to match", SkipKind.NOT_AUDITABLE))
        return
    hashes = bool(table(entry.get("sdist")).get("hash")) or any(
        table(w).get("hash") for w in items(entry.get("wheels")))
    deps.append(Dependency(name=normalize(name), version=version, specifier=f"=={version}",
                           pinned=True, source=source, line=line, hashes=hashes,
                           raw=f"{name} {version}", display_name=name))
