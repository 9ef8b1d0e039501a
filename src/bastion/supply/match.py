"""Which advisories affect a version: the OSV schema's evaluation, exactly.

Per range, events are sorted by version and walked in order: ``introduced`` opens an
affected span, ``fixed`` closes it (exclusive) and ``last_affected`` closes it after that
version (inclusive); ``limit`` caps the whole range (versions at or above every limit are not
affected). ``ECOSYSTEM`` ranges order versions by PEP 440, ``SEMVER`` ranges by SemVer 2.0;
the ``versions`` list matches exactly. A version or event that does not parse never crashes:
the range is undetermined, the ``versions`` list still decides, and the advisory is reported
as unevaluated. Advisories that share an id or alias are one vulnerability.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from packaging.version import InvalidVersion, Version

from bastion.findings import Severity
from bastion.supply.advisories.osv import Advisory, Affected, Event, Range, version_key

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
#: At equal versions, a span opens before it closes: ``introduced: 1.0, fixed: 1.0`` is empty.
_ORDER = {"introduced": 0, "last_affected": 1, "fixed": 2, "limit": 3}

SortKey = tuple[object, ...]


class Undetermined(Exception):
    """A version or event that the range's ordering cannot place."""


@lru_cache(maxsize=65536)
def pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


@lru_cache(maxsize=16384)
def _semver_key(text: str) -> SortKey:
    match = _SEMVER.match(text)
    if not match:
        raise Undetermined(text)
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0, parts)


def _key(kind: str, text: str) -> SortKey:
    """A sort key for a version in a range of ``kind``; ``"0"`` is below everything."""
    if text == "0":
        return (0,)
    if kind == "SEMVER":
        return (1, _semver_key(text))
    version = pep440(text)
    if version is None:
        raise Undetermined(text)
    return (1, version)


Prepared = tuple[tuple[SortKey | None, ...], tuple[tuple[SortKey, str], ...]]


@lru_cache(maxsize=65536)
def _prepare(kind: str, events: tuple[Event, ...]) -> Prepared | None:
    """A range's limits and its events in evaluation order (None: unplaceable events)."""
    try:
        limits = tuple(None if e.version == "*" else _key(kind, e.version)
                       for e in events if e.kind == "limit")
        ordered = sorted(((_key(kind, e.version), _ORDER[e.kind], e.kind) for e in events
                          if e.kind != "limit"), key=lambda t: (t[0], t[1]))
    except Undetermined:
        return None
    return limits, tuple((k, kind_) for k, _order, kind_ in ordered)


def range_affects(rng: Range, version: str) -> bool:
    """Whether one OSV range covers a version; raises :class:`Undetermined`."""
    prepared = _prepare(rng.type, rng.events)
    if prepared is None:
        raise Undetermined(rng.type)
    key = _key(rng.type, version)
    limits, events = prepared
    if limits and not any(limit is None or key < limit for limit in limits):
        return False
    affected = False
    for event_key, kind in events:
        if kind == "introduced":
            affected = affected or key >= event_key
        elif kind == "fixed":
            affected = affected and key < event_key
        else:  # last_affected
            affected = affected and key <= event_key
    return affected


def _in_versions(entry: Affected, version: str) -> bool:
    return version in entry.version_keys or _normal(version) in entry.version_keys


@lru_cache(maxsize=65536)
def _normal(version: str) -> str:
    return version_key(version)


def affects(entry: Affected, version: str) -> bool | None:
    """True or False when decided; None when no range could place the version."""
    if _in_versions(entry, version):
        return True
    undecided = False
    for rng in entry.ranges:
        try:
            if range_affects(rng, version):
                return True
        except Undetermined:
            undecided = True
    return None if undecided and not entry.versions else False


def advisory_affects(advisory: Advisory, name: str, version: str) -> bool | None:
    if advisory.withdrawn:
        return False
    results = [affects(entry, version) for entry in advisory.for_package(name)]
    if any(results):
        return True
    return None if None in results else False


@dataclass(frozen=True)
class Vulnerability:
    """One vulnerability: the advisories that name it (merged by id and alias)."""

    advisories: tuple[Advisory, ...]

    @cached_property
    def ids(self) -> tuple[str, ...]:
        """The primary id first (PYSEC, then GHSA, then anything), then every alias."""
        every = {i for a in self.advisories for i in a.ids}
        return tuple(sorted(every, key=_id_rank))

    @property
    def primary(self) -> str:
        return self.ids[0]

    @cached_property
    def severity(self) -> Severity:
        rated = [a.severity for a in self.advisories if a.rated]
        return max(rated) if rated else Severity.MEDIUM

    @property
    def malicious(self) -> bool:
        return any(a.malicious for a in self.advisories)

    @property
    def headline(self) -> str:
        return next((a.headline for a in self.advisories if a.summary), self.advisories[0].headline)


def _id_rank(ident: str) -> tuple[int, str]:
    for rank, prefix in enumerate(("MAL-", "PYSEC-", "GHSA-", "CVE-")):
        if ident.upper().startswith(prefix):
            return rank, ident
    return 9, ident


def merge(advisories: Iterable[Advisory]) -> list[Vulnerability]:
    """Group advisories that share any id or alias (union-find over the ids)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    items = list(advisories)
    for advisory in items:
        for alias in advisory.aliases:
            parent[find(alias)] = find(advisory.id)
    groups: dict[str, list[Advisory]] = {}
    for advisory in items:
        groups.setdefault(find(advisory.id), []).append(advisory)
    merged = [Vulnerability(tuple(g)) for g in groups.values()]
    return sorted(merged, key=lambda v: (-v.severity.rank, v.primary))


@dataclass(frozen=True)
class MatchResult:
    vulnerabilities: tuple[Vulnerability, ...]
    #: Advisories whose ranges could not place the version (unparseable versions).
    undetermined: tuple[str, ...]


def match(name: str, version: str, advisories: Sequence[Advisory]) -> MatchResult:
    """The vulnerabilities of ``name==version`` among a package's advisories."""
    hits: list[Advisory] = []
    unknown: list[str] = []
    for advisory in advisories:
        result = advisory_affects(advisory, name, version)
        if result:
            hits.append(advisory)
        elif result is None:
            unknown.append(advisory.id)
    return MatchResult(tuple(merge(hits)), tuple(unknown))
