"""``poetry.lock``: Poetry's TOML lock file.

Layout: ``[[package]]`` tables with ``name``, ``version`` and, since lock format 2.0, a
``files`` array of ``{file, hash}``; format 1.x keeps the hashes in ``[metadata.files]``.
A ``[package.source]`` of type ``directory`` is a local project with no published version.
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


class PoetryLockReader:
    kind = "poetry.lock"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        parsed = parse_toml(data, source, self.kind, truncated)
        if isinstance(parsed, Inventory):
            return parsed
        doc, lines = parsed
        index = name_lines(lines)
        legacy = {normalize(k): bool(v) for k, v in
                  table(table(doc.get("metadata")).get("files")).items()}
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        packages = items(doc.get("package"))
        for entry in packages[:MAX_DEPENDENCIES]:
            _package(table(entry), source, index, legacy, deps, skipped)
        if len(packages) > MAX_DEPENDENCIES:
            skipped.append(too_large(source, f"more than {MAX_DEPENDENCIES} packages"))
        return Inventory(source, self.kind, tuple(deps), tuple(skipped), hashes_expected=True)


def _package(entry: dict[str, Any], source: str, index: dict[str, list[int]],
             legacy: dict[str, bool], deps: list[Dependency],
             skipped: list[SkippedDependency]) -> None:
    name, version = entry.get("name"), entry.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        skipped.append(SkippedDependency(source, None, clip(repr(entry.get("name")), 120),
                                         "package entry without a name and version"))
        return
    key = normalize(name)
    line = next_line(index, key)
    if table(entry.get("source")).get("type") == "directory":
        skipped.append(SkippedDependency(source, line, name, "local folder: no published "
                                         "version to match", SkipKind.NOT_AUDITABLE))
        return
    hashes = any(table(f).get("hash") for f in items(entry.get("files"))) or legacy.get(key, False)
    deps.append(Dependency(name=key, version=version, specifier=f"=={version}", pinned=True,
                           source=source, line=line, hashes=hashes, raw=f"{name} {version}",
                           display_name=name))
