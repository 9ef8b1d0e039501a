"""The one result model every Bastion capability reports through.

A :class:`Finding` is an immutable value: a rule id from the catalogue, a severity, where it
was found (file, and inside it the archive member chain, byte offset or line), what was found
and why it matters, the evidence, the fix and references. A :class:`Report` gathers the
findings of one run with what was scanned and what was skipped.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field

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


#: A text that may come from a scanned artifact or a file name: always stored made visible.
SafeText = Annotated[str, AfterValidator(visible)]


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


class Reference(BaseModel):
    """A pointer to a taxonomy entry or advisory: OWASP ML Top 10, MITRE ATLAS, CVE, ..."""

    model_config = ConfigDict(frozen=True)

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


class Location(BaseModel):
    """Where a finding is: a file, and inside it the member chain, byte offset or line.

    ``members`` is the path through nested containers: ``("model.zip", "archive/data.pkl")``
    for a pickle inside a zip inside the file at ``path``.
    """

    model_config = ConfigDict(frozen=True)

    path: SafeText
    members: tuple[SafeText, ...] = ()
    offset: int | None = None
    line: int | None = None

    def child(self, member: str) -> Location:
        """The location of a member inside this one."""
        return Location(path=self.path, members=(*self.members, member))

    def at(self, *, offset: int | None = None, line: int | None = None) -> Location:
        return self.model_copy(update={"offset": offset, "line": line})

    def __str__(self) -> str:
        text = self.path
        for member in self.members:
            text += f" » {member}"
        if self.line is not None:
            text += f":{self.line}"
        if self.offset is not None:
            text += f" @{self.offset}"
        return text


class Suppression(BaseModel):
    """Why a finding does not count: an ignore entry of the policy."""

    model_config = ConfigDict(frozen=True)

    reason: SafeText
    expires: str | None = None
    source: str = "policy"


class Finding(BaseModel):
    """One thing Bastion found. Immutable; policies return changed copies."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    severity: Severity
    category: Category
    location: Location
    message: SafeText
    evidence: SafeText | None = None
    remediation: str | None = None
    references: tuple[Reference, ...] = ()
    suppression: Suppression | None = None
    #: Machine-readable detail (e.g. the resolved callable and its arguments).
    properties: dict[str, Any] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """A stable identity across runs: rule, file, member chain and the evidence.

        Byte offsets and line numbers are left out on purpose, so that unrelated edits
        that move a finding do not make it look new to code scanning or a baseline.
        """
        key = "\x1f".join(
            (self.rule_id, self.location.path, *self.location.members, self.evidence or "")
        )
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    @property
    def active(self) -> bool:
        """False when the policy suppressed this finding."""
        return self.suppression is None


class Skipped(BaseModel):
    """A file Bastion looked at but did not analyse, and why (data, not an error)."""

    model_config = ConfigDict(frozen=True)

    path: SafeText
    reason: SafeText


class ScanStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    files: int = 0
    bytes: int = 0
    analyzed: int = 0
    seconds: float = 0.0


SCHEMA_VERSION = "1.0"


class Report(BaseModel):
    """The result of one Bastion run: findings, skipped inputs, and what was run."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = SCHEMA_VERSION
    tool_version: str
    started: datetime
    roots: tuple[SafeText, ...]
    fail_on: Severity
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    stats: ScanStats = ScanStats()
    #: Free-form notes for the reader, e.g. the advisory database's age.
    notes: tuple[SafeText, ...] = ()

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
