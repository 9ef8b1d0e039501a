"""Conda ``environment.yml``: conda packages, and the ``pip:`` section as requirement lines.

Parsed with PyYAML's *safe* loader only (no object construction from tags). Conda package
specs (``numpy=1.26.0=py311h1``, ``numpy==1.26.0``, ``conda-forge::numpy 1.26.0``) are
matched against PyPI advisories under their PyPI name where the project is the same
(``pytorch`` is ``torch``); a bare ``=1.26`` is conda's fuzzy ``1.26.*``, so only a full
``major.minor.patch`` or an ``==`` / ``=version=build`` spec counts as a pin.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from bastion.findings import clip
from bastion.supply.inventory.interface import (
    MAX_DEPENDENCIES,
    Dependency,
    Inventory,
    SkippedDependency,
    broken,
    decode,
    line_of,
    normalize,
    too_large,
)
from bastion.supply.inventory.requirements import RequirementsReader
from bastion.supply.names import manifest_kind

#: Conda package names whose PyPI project has another name.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch",
                 "py-xgboost": "xgboost", "py-lightgbm": "lightgbm", "pytables": "tables",
                 "py-opencv": "opencv-python", "tensorflow-base": "tensorflow"}
#: Conda packages that are not Python projects on PyPI at all.
NOT_PYPI = frozenset({"python", "python_abi"})
_SPEC = re.compile(r"^(?:[^:\s]+::)?([A-Za-z0-9_.\-]+)\s*(.*)$")


class CondaReader:
    kind = "conda"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        if truncated:
            return Inventory(source, self.kind, skipped=(too_large(source, "file too large; "
                                                                   "not audited"),))
        import yaml  # only conda files need it: keep it off the scan path

        text = decode(data)
        try:
            doc = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError) as exc:
            return Inventory(source, self.kind, skipped=(broken(
                source, f"not valid YAML: {clip(str(exc), 200)}"),))
        specs = doc.get("dependencies") if isinstance(doc, dict) else None
        if not isinstance(specs, list):
            return Inventory(source, self.kind, skipped=(broken(
                source, "no 'dependencies' list: not a conda environment file"),))
        lines = text.splitlines()
        deps: list[Dependency] = []
        skipped: list[SkippedDependency] = []
        for spec in specs[:MAX_DEPENDENCIES]:
            if isinstance(spec, dict) and isinstance(spec.get("pip"), list):
                _pip(spec["pip"], source, lines, deps, skipped)
            elif isinstance(spec, str):
                _conda(spec, source, lines, deps, skipped)
            else:
                skipped.append(SkippedDependency(source, None, clip(repr(spec), 120),
                                                 "dependency entry is not a string"))
        return Inventory(source, self.kind, tuple(deps), tuple(skipped), pins_expected=True)


def _conda(spec: str, source: str, lines: list[str], deps: list[Dependency],
           skipped: list[SkippedDependency]) -> None:
    line = line_of(lines, spec)
    match = _SPEC.match(spec.strip())
    if not match:
        skipped.append(SkippedDependency(source, line, clip(spec, 200),
                                         "not a conda package spec"))
        return
    conda_name, rest = match.group(1), match.group(2).strip()
    if conda_name.lower() in NOT_PYPI:
        return
    version = _conda_pin(rest)
    name = CONDA_TO_PYPI.get(conda_name.lower(), conda_name)
    deps.append(Dependency(name=normalize(name), version=version, specifier=rest,
                           pinned=version is not None, source=source, line=line,
                           raw=clip(spec, 300), display_name=conda_name, ecosystem="conda"))


def _conda_pin(rest: str) -> str | None:
    """The exact version of a conda match spec, or None for a range or fuzzy version."""
    if rest.startswith("=="):
        version = rest[2:].split("=")[0].strip()
        return version if version and "*" not in version else None
    # "=1.26.0=py311_0" or the space form "1.26.0 py311_0"
    parts = rest[1:].split("=") if rest.startswith("=") else rest.split()
    if not parts or not parts[0] or any(c in parts[0] for c in "*<>!,|"):
        return None
    exact = len(parts) > 1 or parts[0].count(".") >= 2
    return parts[0] if exact else None


def _pip(entries: list[Any], source: str, lines: list[str], deps: list[Dependency],
         skipped: list[SkippedDependency]) -> None:
    """The ``pip:`` section holds requirement lines: parse them as a requirements file."""
    texts = [e if isinstance(e, str) else "" for e in entries]
    sub = RequirementsReader().read("\n".join(texts).encode("utf-8", "surrogateescape"), source)
    where = {i + 1: line_of(lines, t) for i, t in enumerate(texts) if t}
    deps.extend(replace(d, line=where.get(d.line or 0)) for d in sub.dependencies)
    skipped.extend(replace(s, line=where.get(s.line or 0)) for s in sub.skipped)
