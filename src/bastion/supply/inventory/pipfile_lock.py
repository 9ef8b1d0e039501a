"""``Pipfile.lock``: Pipenv's JSON lock file.

Layout: ``_meta``, then ``default`` and ``develop`` objects mapping each package name to
``{"version": "==1.2", "hashes": [...], "markers": ...}``; VCS, file and editable entries
carry ``git`` / ``file`` / ``path`` / ``editable`` instead of a published version.
"""

from __future__ import annotations

import json
from typing import Any

from bastion.findings import clip
from bastion.supply.inventory.interface import (
    MAX_DEPENDENCIES,
    Dependency,
    Inventory,
    SkipKind,
    SkippedDependency,
    broken,
    decode,
    items,
    line_of,
    normalize,
    table,
    too_large,
)
from bastion.supply.names import manifest_kind


class PipfileLockReader:
    kind = "Pipfile.lock"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        if truncated:
            return Inventory(source, self.kind, skipped=(too_large(source, "file too large; "
                                                                   "not audited"),))
        text = decode(data)
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            return Inventory(source, self.kind, skipped=(broken(source, f"not valid JSON: "
                                                                f"{clip(str(exc), 200)}"),))
        if not isinstance(doc, dict) or not any(k in doc for k in ("default", "develop")):
            return Inventory(source, self.kind, skipped=(broken(
                source, "no 'default' or 'develop' section: not a Pipfile.lock"),))
        lines = text.splitlines()
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        entries = [(n, e) for s in ("default", "develop") for n, e in table(doc.get(s)).items()]
        for name, entry in entries[:MAX_DEPENDENCIES]:
            _package(name, table(entry), source, lines, deps, skipped)
        if len(entries) > MAX_DEPENDENCIES:
            skipped.append(too_large(source, f"more than {MAX_DEPENDENCIES} packages"))
        return Inventory(source, self.kind, tuple(deps), tuple(skipped), hashes_expected=True)


def _package(name: str, entry: dict[str, Any], source: str, lines: list[str],
             deps: list[Dependency], skipped: list[SkippedDependency]) -> None:
    line = line_of(lines, json.dumps(name) + ":")
    version = entry.get("version")
    if not isinstance(version, str) or any(k in entry for k in ("git", "path", "file")):
        skipped.append(SkippedDependency(source, line, name, "VCS, path, file or editable "
                                         "entry: no published version to match",
                                         SkipKind.NOT_AUDITABLE))
        return
    exact = version.removeprefix("===").removeprefix("==").strip()
    pinned = version.startswith("==") and "*" not in exact
    markers = entry.get("markers")
    deps.append(Dependency(
        name=normalize(name), version=exact if pinned else None, specifier=version,
        pinned=pinned, source=source, line=line, hashes=bool(items(entry.get("hashes"))),
        markers=markers if isinstance(markers, str) else None, raw=f"{name}{version}",
        display_name=name))
