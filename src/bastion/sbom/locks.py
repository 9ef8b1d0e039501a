"""Hashes and dependency edges from the manifests that record them.

The audit's inventory keeps what matching needs (name, version, *whether* there is a
hash). An SBOM needs more: the hash values, the distribution files and who depends on whom.
This module re-reads a manifest (bounded, like the inventory readers) for exactly that:

- ``uv.lock``: ``sdist``/``wheels`` with ``url`` and ``hash``; ``dependencies``,
  ``optional-dependencies`` and ``dev-dependencies`` (``{name, version?}`` tables).
- ``poetry.lock``: ``files = [{file, hash}]`` (or 1.x ``[metadata.files]``) and
  ``[package.dependencies]`` (name → constraint).
- ``pylock.toml`` (PEP 751): ``wheels``/``sdist``/``archive`` with ``hashes`` tables, and
  ``[[packages.dependencies]]``.
- ``Pipfile.lock``: ``hashes`` lists; no edges.
- requirements files: ``--hash=alg:hex`` options per line; no edges.

A file that no longer parses gives no details (the audit already reported it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.sbom.values import Artifact, Digest, safe_url, text
from bastion.supply.inventory.interface import (
    Inventory,
    decode,
    items,
    normalize,
    read_bounded,
    table,
)
from bastion.supply.inventory.requirements import logical_lines, split_options, strip_comment

#: (normalized name, version) of a locked package.
Key = tuple[str, str]
#: Most hashes and distribution files kept for one package (numpy locks ~40 wheels).
MAX_DIGESTS = 256
MAX_ARTIFACTS = 256
#: Most dependency edges kept from one package.
MAX_EDGES = 1_000


@dataclass
class Detail:
    """What a manifest adds about one package: hashes and distribution files."""

    digests: set[Digest] = field(default_factory=set)
    artifacts: dict[str, Artifact] = field(default_factory=dict)

    def add(self, name: str, url: object, digests: Iterable[Digest | None]) -> None:
        found = [d for d in digests if d is not None]
        for digest in found:
            if len(self.digests) < MAX_DIGESTS:
                self.digests.add(digest)
        shown = text(name) or (safe_url(url) or "").rsplit("/", 1)[-1]
        if shown and len(self.artifacts) < MAX_ARTIFACTS and shown not in self.artifacts:
            self.artifacts[shown] = Artifact(shown, safe_url(url), tuple(sorted(set(found))))


@dataclass
class Details:
    """Everything the manifests of one inventory add, by package key."""

    packages: dict[Key, Detail] = field(default_factory=dict)
    edges: dict[Key, set[Key]] = field(default_factory=dict)
    #: Whether the format records dependency edges at all.
    graph: bool = False

    def detail(self, key: Key) -> Detail:
        return self.packages.setdefault(key, Detail())


def read_details(inventory: Inventory) -> Details:
    """Hashes and edges for an inventory, from its manifest(s) on disk."""
    parser = _PARSERS.get(inventory.kind)
    if parser is None:
        return Details()
    details = Details(graph=inventory.kind in _GRAPHS)
    sources = {inventory.source, *(d.source for d in inventory.dependencies)}
    if inventory.kind != "requirements":
        sources = {inventory.source}
    for source in sorted(sources):
        data = _read(source)
        if data is not None:
            parser(data, details)
    return details


def _read(source: str) -> bytes | None:
    try:
        with Path(source).open("rb") as handle:
            data, truncated = read_bounded(handle)
    except OSError:
        return None
    return None if truncated else data


def _toml(data: bytes) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(decode(data))
    except (tomllib.TOMLDecodeError, RecursionError):
        return {}


def _name_version(entry: dict[str, Any]) -> Key | None:
    name, version = entry.get("name"), entry.get("version")
    if isinstance(name, str) and isinstance(version, str) and name and version:
        return normalize(name), version
    return None


Wanted = dict[Key, list[tuple[str, str | None]]]


def _link(details: Details, wanted: Wanted) -> None:
    """Record edges to named packages (a version picks one when a name is locked twice)."""
    by_name: dict[str, list[Key]] = {}
    for known in details.packages:
        by_name.setdefault(known[0], []).append(known)
    for key, names in wanted.items():
        targets = details.edges.setdefault(key, set())
        for name, version in names:
            for candidate in by_name.get(name, []):
                if (version is None or candidate[1] == version) and len(targets) < MAX_EDGES:
                    targets.add(candidate)


def _refs(listed: Iterable[Any]) -> list[tuple[str, str | None]]:
    """``{name = "x", version = "1"}`` tables (uv, PEP 751) → (normalized name, version)."""
    found: list[tuple[str, str | None]] = []
    for ref in map(table, listed):
        name, version = ref.get("name"), ref.get("version")
        if isinstance(name, str) and name and len(found) < MAX_EDGES:
            found.append((normalize(name), version if isinstance(version, str) else None))
    return found


def _uv(data: bytes, details: Details) -> None:
    wanted: Wanted = {}
    for entry in map(table, items(_toml(data).get("package"))):
        key = _name_version(entry)
        origin = table(entry.get("source"))
        if key is None or any(k in origin for k in ("editable", "virtual", "directory", "path")):
            continue  # the project itself or a local folder: not a component
        detail = details.detail(key)
        sdist = table(entry.get("sdist"))
        if sdist:
            detail.add("", sdist.get("url"), [_uv_hash(sdist)])
        for wheel in map(table, items(entry.get("wheels"))):
            detail.add("", wheel.get("url"), [_uv_hash(wheel)])
        refs = list(items(entry.get("dependencies")))
        for group in ("optional-dependencies", "dev-dependencies"):
            for listed in table(entry.get(group)).values():
                refs.extend(items(listed))
        wanted[key] = _refs(refs)
    _link(details, wanted)


def _uv_hash(artifact: dict[str, Any]) -> Digest | None:
    value = artifact.get("hash")
    return Digest.from_text(value) if isinstance(value, str) else None


def _poetry(data: bytes, details: Details) -> None:
    doc = _toml(data)
    legacy = {normalize(k): v for k, v in table(table(doc.get("metadata")).get("files")).items()}
    wanted: Wanted = {}
    for entry in map(table, items(doc.get("package"))):
        key = _name_version(entry)
        if key is None or table(entry.get("source")).get("type") == "directory":
            continue
        detail = details.detail(key)
        for file in map(table, [*items(entry.get("files")), *items(legacy.get(key[0]))]):
            value = file.get("hash")
            detail.add(text(file.get("file")), None,
                       [Digest.from_text(value) if isinstance(value, str) else None])
        names = list(table(entry.get("dependencies")))[:MAX_EDGES]
        wanted[key] = [(normalize(n), None) for n in names if n]
    _link(details, wanted)


def _pylock(data: bytes, details: Details) -> None:
    wanted: Wanted = {}
    for entry in map(table, items(_toml(data).get("packages"))):
        key = _name_version(entry)
        if key is None or "directory" in entry:
            continue
        detail = details.detail(key)
        for artifact in map(table, [*items(entry.get("wheels")), entry.get("sdist"),
                                    entry.get("archive")]):
            hashes = table(artifact.get("hashes"))
            digests = [Digest.parse(str(alg), v) for alg, v in hashes.items() if isinstance(v, str)]
            if artifact:
                detail.add(text(artifact.get("name")), artifact.get("url"), digests)
        wanted[key] = _refs(items(entry.get("dependencies")))
    _link(details, wanted)


def _pipfile(data: bytes, details: Details) -> None:
    try:
        doc = json.loads(decode(data))
    except (ValueError, RecursionError):
        return
    for section in ("default", "develop"):
        for name, entry in table(table(doc).get(section)).items():
            spec = table(entry).get("version")
            if not isinstance(spec, str) or not spec.startswith("=="):
                continue
            digests = [Digest.from_text(h) for h in items(table(entry).get("hashes"))
                       if isinstance(h, str)]
            details.detail((normalize(name), spec[2:].strip())).add("", None, digests)


def _requirements(data: bytes, details: Details) -> None:
    """``name==version --hash=alg:hex`` lines; the pin decides the key (others have no hash)."""
    for logical in logical_lines(decode(data)):
        content = strip_comment(logical.text)
        if not content or content.startswith("-"):
            continue
        spec, options = split_options(content)
        hashes = _hash_options(options)
        name, sep, version = spec.partition("==")
        if not hashes or not sep:
            continue
        version = version.lstrip("=").split(";", 1)[0].strip()
        name = name.split("[", 1)[0].strip()
        if name and version:
            details.detail((normalize(name), version)).add(
                "", None, [Digest.from_text(h) for h in hashes])


def _hash_options(options: list[str]) -> list[str]:
    """The values of ``--hash=alg:hex`` (and ``--hash alg:hex``) options."""
    found = []
    for index, option in enumerate(options):
        if option.startswith("--hash="):
            found.append(option.split("=", 1)[1])
        elif option == "--hash" and index + 1 < len(options):
            found.append(options[index + 1])
    return found


_PARSERS: dict[str, Callable[[bytes, Details], None]] = {
    "uv.lock": _uv, "poetry.lock": _poetry, "pylock": _pylock, "Pipfile.lock": _pipfile,
    "requirements": _requirements,
}
_GRAPHS = frozenset({"uv.lock", "poetry.lock", "pylock"})
