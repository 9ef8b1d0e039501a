"""OSV records (ossf.github.io/osv-schema) for the PyPI ecosystem, parsed defensively.

An advisory database is input like any other: every field is type-checked, unknown range
types and non-PyPI entries are dropped, and a record that does not make sense becomes None
rather than an exception. The parsed :class:`Advisory` keeps only what matching, severity,
fixes and reports need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from bastion.findings import Severity
from bastion.supply.advisories.cvss import vector_severity
from bastion.supply.inventory.interface import normalize

#: GitHub's and other databases' words for severity (``database_specific.severity``).
_WORDS = {"CRITICAL": Severity.CRITICAL, "HIGH": Severity.HIGH, "MODERATE": Severity.MEDIUM,
          "MEDIUM": Severity.MEDIUM, "LOW": Severity.LOW}
_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_PLAIN = re.compile(r"(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))*\Z")
#: A takeover of a real project, or a package that is malware from the start.
_TAKEOVER = re.compile(r"taken over|account (?:compromise|takeover)|hijack", re.I)
_MALWARE = re.compile(r"malicious (?:project|release|package|version|code)", re.I)
_MALWARE_LEAD = re.compile(r"^\s*(?:malicious (?:code|package)|malware)\b", re.I)


@dataclass(frozen=True)
class Event:
    kind: str  # introduced | fixed | last_affected | limit
    version: str


@dataclass(frozen=True)
class Range:
    type: str  # ECOSYSTEM | SEMVER (GIT ranges name commits, not versions: dropped)
    events: tuple[Event, ...]


@dataclass(frozen=True)
class Affected:
    name: str  # normalized
    ranges: tuple[Range, ...]
    versions: tuple[str, ...]
    #: ``versions`` as written and PEP 440-normalized, for constant-time membership.
    version_keys: frozenset[str] = field(default=frozenset(), compare=False, hash=False)


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    details: str
    modified: str
    withdrawn: bool
    severity: Severity
    #: Whether the severity came from a vector or a database's word (else a default).
    rated: bool
    malicious: bool
    affected: tuple[Affected, ...]
    references: tuple[str, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    @property
    def headline(self) -> str:
        """The summary, or the first sentence of the details, for one-line display."""
        text = self.summary or self.details.split(". ", 1)[0]
        text = " ".join(text.split())
        return text if len(text) <= 160 else text[:157] + "..."

    def for_package(self, name: str) -> tuple[Affected, ...]:
        return tuple(a for a in self.affected if a.name == name)


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_record(record: Any) -> Advisory | None:
    """An :class:`Advisory` from an OSV record (a decoded JSON/YAML object), or None."""
    if not isinstance(record, dict) or not _str(record.get("id")):
        return None
    affected = tuple(a for a in (_affected(x) for x in _list(record.get("affected"))) if a)
    aliases = tuple(dict.fromkeys(_str(a) for a in _list(record.get("aliases")) if _str(a)))
    ident = _str(record["id"])
    summary, details = _str(record.get("summary")), _str(record.get("details"))
    severity, rated = _severity(record)
    malicious = _malicious(ident, aliases, summary, details)
    return Advisory(
        id=ident, aliases=tuple(a for a in aliases if a != ident), summary=summary,
        details=details, modified=_str(record.get("modified")),
        withdrawn=bool(record.get("withdrawn")),
        severity=Severity.CRITICAL if malicious else severity, rated=rated or malicious,
        malicious=malicious, affected=affected,
        references=tuple(_str(_dict(r).get("url")) for r in _list(record.get("references"))
                         if _str(_dict(r).get("url"))),
    )


def pypi_names(record: Any) -> set[str]:
    """The normalized PyPI package names an OSV record affects (what it is indexed by)."""
    names = set()
    for entry in _list(_dict(record).get("affected")):
        package = _dict(_dict(entry).get("package"))
        if _str(package.get("ecosystem")).split(":", 1)[0] == "PyPI" and _str(package.get("name")):
            names.add(normalize(_str(package["name"])))
    return names


def _affected(entry: Any) -> Affected | None:
    package = _dict(_dict(entry).get("package"))
    if _str(package.get("ecosystem")).split(":", 1)[0] != "PyPI" or not _str(package.get("name")):
        return None
    ranges = []
    for raw in _list(entry.get("ranges")):
        kind = _str(_dict(raw).get("type"))
        if kind not in ("ECOSYSTEM", "SEMVER"):
            continue
        events = tuple(
            Event(k, _str(e[k])) for e in _list(raw.get("events")) if isinstance(e, dict)
            for k in _EVENT_KINDS if k in e and _str(e[k])
        )
        ranges.append(Range(kind, events))
    versions = tuple(_str(v) for v in _list(entry.get("versions")) if _str(v))
    # Most listed versions are plain release numbers, already in normal form: parse the rest.
    keys = frozenset(versions) | {version_key(v) for v in versions if not _PLAIN.match(v)}
    return Affected(normalize(_str(package["name"])), tuple(ranges), versions, keys)


def version_key(text: str) -> str:
    """A version's PEP 440 normal form (``1.0`` and ``1.0.0`` differ; ``1.0-1`` is
    ``1.0.post1``), or the text itself when it is not a PEP 440 version."""
    try:
        return str(Version(text))
    except InvalidVersion:
        return text


def _severity(record: dict[str, Any]) -> tuple[Severity, bool]:
    """The worst CVSS-derived rating, else the database's word, else medium (unrated)."""
    entries = [*_list(record.get("severity"))]
    for entry in _list(record.get("affected")):
        entries.extend(_list(_dict(entry).get("severity")))
    rated = [s for e in entries if (s := vector_severity(_str(_dict(e).get("type")),
                                                         _str(_dict(e).get("score"))))]
    if rated:
        return max(rated), True
    words = [_str(_dict(record.get("database_specific")).get("severity"))]
    for entry in _list(record.get("affected")):
        for key in ("database_specific", "ecosystem_specific"):
            words.append(_str(_dict(_dict(entry).get(key)).get("severity")))
    found = [_WORDS[w.upper()] for w in words if w.upper() in _WORDS]
    if found:
        return max(found), True
    return Severity.MEDIUM, False


def _malicious(ident: str, aliases: tuple[str, ...], summary: str, details: str) -> bool:
    """OSV's malicious-packages feed uses MAL- ids; PyPA records describe takeovers in words."""
    if any(i.upper().startswith("MAL-") for i in (ident, *aliases)):
        return True
    if any(_MALWARE_LEAD.match(t) for t in (summary, details)):
        return True
    text = f"{summary} {details}"
    return bool(_TAKEOVER.search(text) and _MALWARE.search(text))
