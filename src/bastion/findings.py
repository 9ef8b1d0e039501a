"""The one result model every Bastion capability reports through.

A :class:`Finding` is an immutable value: a rule id from the catalogue, a severity, where it
was found (file, and inside it the archive member chain, byte offset or line), what was found
and why it matters, the evidence, the fix and references. A :class:`Report` gathers the
findings of one run with what was scanned and what was skipped.

These are frozen dataclasses, not pydantic models: they are built for every finding of every
scan, and importing and building pydantic models cost more than the whole scan of a large
checkpoint (measured; see the README). They are declared with :func:`bastion.records.dataclass`,
the standard decorator's subset without its ``inspect`` import (``bastion verify`` builds them
while its model hashes). ``to_dict``/``from_dict`` are the JSON
form, whose schema ``bastion.report.schema`` documents. Every text that may come from a scanned
file or its name is made visible (:func:`visible`) when the value is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from bastion.records import as_dict, dataclass, field
from bastion.records import replace as replace_value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

#: Longest evidence or message text kept in a finding. Scanned files are hostile: a
#: multi-megabyte string argument must not become a multi-megabyte report.
MAX_TEXT = 2_000

#: Control characters, bidi overrides and lone surrogates (undecodable bytes of a file name).
_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _show(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Make control characters, bidi overrides and undecodable bytes visible as escapes.

    Terminal escapes and bidi overrides in a hostile file (or its *name*) must not reach a
    terminal or a report as live characters, and a lone surrogate must not make a report
    impossible to encode as UTF-8. Idempotent, so models may apply it on every validation.
    """
    return _CONTROL.sub(_show, text)


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """Bound a text taken from a scanned artifact and make control characters visible."""
    if len(text) > limit:
        text = text[:limit] + f"… [{len(text) - limit} more characters]"
    return visible(text)


class Severity(StrEnum):
    """How bad a finding is. Ordered: ``Severity.CRITICAL > Severity.HIGH``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {s: i for i, s in enumerate(Severity)}


class Category(StrEnum):
    """What kind of risk a finding is about."""

    CODE_EXECUTION = "code-execution"  # an artifact runs code when loaded
    MALFORMED = "malformed"  # an artifact that does not parse; its loader may misbehave
    RESOURCE = "resource-exhaustion"  # bombs, oversized structures
    INTEGRITY = "integrity"  # signatures, hashes, tampering
    VULNERABILITY = "vulnerability"  # known advisories
    MALICIOUS_PACKAGE = "malicious-package"
    DEPENDENCY_HYGIENE = "dependency-hygiene"  # unpinned, no hashes
    CONFIGURATION = "configuration"  # insecure settings of ML infrastructure
    ROBUSTNESS = "robustness"  # red-team results
    PRIVACY = "privacy"
    COVERAGE = "coverage"  # what could not be scanned
    POLICY = "policy"


class RefKind(StrEnum):
    OWASP_ML = "owasp-ml"
    ATLAS = "mitre-atlas"
    CVE = "cve"
    GHSA = "ghsa"
    PYSEC = "pysec"
    CWE = "cwe"
    URL = "url"


_REF_URLS = {
    RefKind.OWASP_ML: "https://owasp.org/www-project-machine-learning-security-top-10/",
    RefKind.ATLAS: "https://atlas.mitre.org/techniques/{id}",
    RefKind.CVE: "https://www.cve.org/CVERecord?id={id}",
    RefKind.GHSA: "https://github.com/advisories/{id}",
    RefKind.PYSEC: "https://osv.dev/vulnerability/{id}",
    RefKind.CWE: "https://cwe.mitre.org/data/definitions/{num}.html",
}


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class Reference:
    """A pointer to a taxonomy entry or advisory: OWASP ML Top 10, MITRE ATLAS, CVE, ..."""

    kind: RefKind
    id: str
    url: str | None = None

    @classmethod
    def of(cls, ref: str) -> Reference:
        """Build a reference from its usual spelling: ``ML06``, ``AML.T0010``, ``CVE-…``."""
        upper = ref.upper()
        if upper.startswith("ML") and upper[2:4].isdigit():
            kind = RefKind.OWASP_ML
        elif upper.startswith("AML."):
            kind = RefKind.ATLAS
        elif upper.startswith("CVE-"):
            kind = RefKind.CVE
        elif upper.startswith("GHSA-"):
            kind = RefKind.GHSA
        elif upper.startswith("PYSEC-"):
            kind = RefKind.PYSEC
        elif upper.startswith("CWE-"):
            kind = RefKind.CWE
        elif ref.startswith(("https://", "http://")):
            return cls(kind=RefKind.URL, id=ref, url=ref)
        else:
            raise ValueError(f"unrecognised reference {ref!r}")
        template = _REF_URLS.get(kind)
        url = template.format(id=ref, num=ref.split("-")[-1]) if template else None
        return cls(kind=kind, id=ref, url=url)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "id": self.id, "url": self.url}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(RefKind(data["kind"]), str(data["id"]), data.get("url"))


@dataclass(frozen=True, slots=True)
class Location:
    """Where a finding is: a file, and inside it the member chain, byte offset or line.

    ``members`` is the path through nested containers: ``("model.zip", "archive/data.pkl")``
    for a pickle inside a zip inside the file at ``path``.
    """

    path: str
    members: tuple[str, ...] = ()
    offset: int | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        _set(self, "path", visible(self.path))
        _set(self, "members", tuple(visible(m) for m in self.members))

    def child(self, member: str) -> Location:
        """The location of a member inside this one."""
        return Location(path=self.path, members=(*self.members, member))

    def at(self, *, offset: int | None = None, line: int | None = None) -> Location:
        return Location(self.path, self.members, offset, line)

    def __str__(self) -> str:
        text = self.path
        for member in self.members:
            text += f" » {member}"
        if self.line is not None:
            text += f":{self.line}"
        if self.offset is not None:
            text += f" @{self.offset}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "members": list(self.members), "offset": self.offset,
                "line": self.line}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Location:
        return cls(str(data["path"]), tuple(data.get("members") or ()), data.get("offset"),
                   data.get("line"))


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why a finding does not count: an ignore entry of the policy."""

    reason: str
    expires: str | None = None
    source: str = "policy"

    def __post_init__(self) -> None:
        _set(self, "reason", visible(self.reason))

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "expires": self.expires, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suppression:
        return cls(str(data["reason"]), data.get("expires"), data.get("source", "policy"))


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing Bastion found. Immutable; policies return changed copies (:meth:`replace`)."""

    rule_id: str
    severity: Severity
    category: Category
    location: Location
    message: str
    evidence: str | None = None
    remediation: str | None = None
    references: tuple[Reference, ...] = ()
    suppression: Suppression | None = None
    #: Machine-readable detail (e.g. the resolved callable and its arguments); JSON values.
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _set(self, "message", visible(self.message))
        if self.evidence is not None:
            _set(self, "evidence", visible(self.evidence))

    @property
    def fingerprint(self) -> str:
        """A stable identity across runs: rule, file, member chain and the evidence.

        Byte offsets and line numbers are left out on purpose, so that unrelated edits
        that move a finding do not make it look new to code scanning or a baseline.
        """
        key = "\x1f".join(
            (self.rule_id, self.location.path, *self.location.members, self.evidence or "")
        )
        import hashlib  # OpenSSL's start-up is paid only when a fingerprint is asked for

        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    @property
    def active(self) -> bool:
        """False when the policy suppressed this finding."""
        return self.suppression is None

    def replace(self, **changes: Any) -> Finding:
        return replace_value(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "category": self.category.value,
            "location": self.location.to_dict(),
            "message": self.message,
            "evidence": self.evidence,
            "remediation": self.remediation,
            "references": [r.to_dict() for r in self.references],
            "suppression": self.suppression.to_dict() if self.suppression else None,
            "properties": dict(self.properties),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        suppression = data.get("suppression")
        return cls(
            rule_id=str(data["rule_id"]),
            severity=Severity(data["severity"]),
            category=Category(data["category"]),
            location=Location.from_dict(data["location"]),
            message=str(data["message"]),
            evidence=data.get("evidence"),
            remediation=data.get("remediation"),
            references=tuple(Reference.from_dict(r) for r in data.get("references") or ()),
            suppression=Suppression.from_dict(suppression) if suppression else None,
            properties=dict(data.get("properties") or {}),
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file Bastion looked at but did not analyse, and why (data, not an error)."""

    path: str
    reason: str

    def __post_init__(self) -> None:
        _set(self, "path", visible(self.path))
        _set(self, "reason", visible(self.reason))

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ScanStats:
    files: int = 0
    bytes: int = 0
    #: Files an analyzer handled (claimed), whether analysed now or taken from the cache.
    analyzed: int = 0
    seconds: float = 0.0
    #: Of the analysed files, how many had their findings from the result cache
    #: (``bastion scan --cache``); 0 without a cache.
    cached: int = 0

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


SCHEMA_VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class Report:
    """The result of one Bastion run: findings, skipped inputs, and what was run."""

    tool_version: str
    started: datetime
    roots: tuple[str, ...]
    fail_on: Severity
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    stats: ScanStats = ScanStats()
    #: Free-form notes for the reader, e.g. the advisory database's age.
    notes: tuple[str, ...] = ()
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _set(self, "roots", tuple(visible(r) for r in self.roots))
        _set(self, "notes", tuple(visible(n) for n in self.notes))

    @property
    def active(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.active)

    @property
    def failing(self) -> tuple[Finding, ...]:
        """Active findings at or above the fail threshold."""
        return tuple(f for f in self.active if f.severity >= self.fail_on)

    @property
    def passed(self) -> bool:
        return not self.failing

    def counts(self) -> dict[Severity, int]:
        counts = dict.fromkeys(reversed(Severity), 0)
        for finding in self.active:
            counts[finding.severity] += 1
        return counts

    def replace(self, **changes: Any) -> Report:
        return replace_value(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "started": self.started.isoformat(),
            "roots": list(self.roots),
            "fail_on": self.fail_on.value,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [s.to_dict() for s in self.skipped],
            "stats": self.stats.to_dict(),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Read a report back (e.g. a baseline). Raises ``ValueError`` on a malformed one."""
        try:
            return cls(
                tool_version=str(data["tool_version"]),
                started=datetime.fromisoformat(str(data["started"]).replace("Z", "+00:00")),
                roots=tuple(str(r) for r in data["roots"]),
                fail_on=Severity(data["fail_on"]),
                findings=tuple(Finding.from_dict(f) for f in data.get("findings") or ()),
                skipped=tuple(Skipped(str(s["path"]), str(s["reason"]))
                              for s in data.get("skipped") or ()),
                stats=ScanStats(**(data.get("stats") or {})),
                notes=tuple(str(n) for n in data.get("notes") or ()),
                schema_version=str(data.get("schema_version", SCHEMA_VERSION)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a Bastion report: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a Bastion report: the top level is not an object")
        return cls.from_dict(data)
