"""``pyproject.toml``: PEP 621 ``[project]`` dependencies, PEP 735 dependency groups, Poetry.

Library metadata declares *ranges* on purpose, so only exact pins can be audited here and
loose ranges are not findings (the lock file or requirements file next to it is what pins);
the inventory expects neither pins nor hashes.
"""

from __future__ import annotations

from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from bastion.findings import clip
from bastion.supply.inventory.interface import (
    Dependency,
    Inventory,
    SkipKind,
    SkippedDependency,
    line_of,
    normalize,
    parse_toml,
    table,
)
from bastion.supply.inventory.requirements import exact_version
from bastion.supply.names import manifest_kind


class PyprojectReader:
    kind = "pyproject"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        parsed = parse_toml(data, source, self.kind, truncated)
        if isinstance(parsed, Inventory):
            return parsed
        doc, lines = parsed
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        for item in _pep508_entries(doc):
            _pep508(item, source, lines, deps, skipped)
        for name, value in _poetry_entries(doc):
            _poetry(name, value, source, lines, deps, skipped)
        return Inventory(source, self.kind, tuple(deps), tuple(skipped))


def _pep508_entries(doc: dict[str, Any]) -> list[Any]:
    project = table(doc.get("project"))
    items: list[Any] = list(project.get("dependencies") or [])
    for group in table(project.get("optional-dependencies")).values():
        items.extend(group if isinstance(group, list) else [])
    for group in table(doc.get("dependency-groups")).values():
        # PEP 735 entries are strings or {include-group = "..."} tables (already listed).
        items.extend(g for g in (group if isinstance(group, list) else []) if isinstance(g, str))
    return items


def _poetry_entries(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    poetry = table(table(doc.get("tool")).get("poetry"))
    tables = [poetry.get("dependencies"), poetry.get("dev-dependencies")]
    tables += [table(g).get("dependencies") for g in table(poetry.get("group")).values()]
    return [(k, v) for t in tables for k, v in table(t).items() if k.lower() != "python"]


def _pep508(item: Any, source: str, lines: list[str], deps: list[Dependency],
            skipped: list[SkippedDependency]) -> None:
    if not isinstance(item, str):
        skipped.append(SkippedDependency(source, None, clip(repr(item), 200),
                                         "dependency entry is not a string"))
        return
    line = line_of(lines, item)
    try:
        req = Requirement(item)
    except InvalidRequirement as exc:
        skipped.append(SkippedDependency(source, line, clip(item, 200),
                                         f"not a valid requirement: {exc}"))
        return
    if req.url:
        skipped.append(SkippedDependency(source, line, clip(item, 200), "direct URL "
                                         "reference: no version to match", SkipKind.NOT_AUDITABLE))
        return
    version = exact_version(req)
    deps.append(Dependency(
        name=normalize(req.name), version=version, specifier=str(req.specifier),
        pinned=version is not None, source=source, line=line,
        markers=str(req.marker) if req.marker else None, extras=tuple(sorted(req.extras)),
        raw=clip(item, 300), display_name=req.name))


def _poetry(name: str, value: Any, source: str, lines: list[str], deps: list[Dependency],
            skipped: list[SkippedDependency]) -> None:
    line = line_of(lines, f"{name} =") or line_of(lines, name)
    entries = value if isinstance(value, list) else [value]  # multiple-constraint form
    for entry in entries:
        spec = table(entry)
        constraint = entry if isinstance(entry, str) else spec.get("version")
        if any(k in spec for k in ("git", "path", "url")):
            skipped.append(SkippedDependency(source, line, name, "VCS, path or URL "
                                             "dependency: no version to match",
                                             SkipKind.NOT_AUDITABLE))
            continue
        if not isinstance(constraint, str):
            skipped.append(SkippedDependency(source, line, clip(f"{name} = {entry!r}", 200),
                                             "Poetry dependency without a version string"))
            continue
        version = _poetry_exact(constraint.strip())
        extras = spec.get("extras")
        deps.append(Dependency(
            name=normalize(name), version=version, specifier=constraint.strip(),
            pinned=version is not None, source=source, line=line,
            markers=spec.get("markers") if isinstance(spec.get("markers"), str) else None,
            extras=tuple(sorted(str(e) for e in extras)) if isinstance(extras, list) else (),
            raw=clip(f"{name} = {constraint}", 300), display_name=name))


def _poetry_exact(constraint: str) -> str | None:
    """Poetry reads a bare ``1.2.3`` (and ``==1.2.3``) as exactly that version."""
    text = constraint.removeprefix("==").strip()
    if not text or any(c in text for c in "^~*<>=!, |"):
        return None
    return text
