"""Rules: the catalogue entries findings point at.

Each capability declares its rules as a tuple of :class:`Rule` in its own ``rules.py``; the
full catalogue (:func:`bastion.catalogue.all_rules`) is the explicit union of those tuples.
A rule knows its default severity and makes findings, so every finding of one rule looks the
same wherever it is raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bastion.findings import Category, Finding, Location, Reference, Severity, clip
from bastion.records import dataclass

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True, slots=True)
class Rule:
    """A catalogue entry. ``references`` may be given as strings (``"CWE-502"``, ``"ML06"``)."""

    id: str
    title: str
    severity: Severity
    category: Category
    description: str
    remediation: str | None = None
    #: Given as ``Reference`` objects or their usual spelling; stored as ``Reference``.
    references: tuple[Reference | str, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or self.id.upper() != self.id or " " in self.id:
            raise ValueError(f"rule ids are UPPER-KEBAB-CASE, got {self.id!r}")
        refs = tuple(r if isinstance(r, Reference) else Reference.of(r)
                     for r in self.references)
        object.__setattr__(self, "references", refs)

    @property
    def refs(self) -> tuple[Reference, ...]:
        """The references, parsed (``__post_init__`` parsed every string)."""
        return self.references  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "severity": self.severity.value,
            "category": self.category.value, "description": self.description,
            "remediation": self.remediation, "references": [r.to_dict() for r in self.refs],
        }

    def finding(
        self,
        location: Location,
        message: str,
        *,
        evidence: str | None = None,
        severity: Severity | None = None,
        remediation: str | None = None,
        references: Iterable[Reference | str] = (),
        properties: Mapping[str, Any] | None = None,
    ) -> Finding:
        """A finding of this rule; severity, remediation and references default to the rule's."""
        extra = tuple(r if isinstance(r, Reference) else Reference.of(r) for r in references)
        return Finding(
            rule_id=self.id,
            severity=severity or self.severity,
            category=self.category,
            location=location,
            message=clip(message),
            evidence=clip(evidence) if evidence is not None else None,
            remediation=remediation or self.remediation,
            references=self.refs + tuple(r for r in extra if r not in self.refs),
            properties=dict(properties or {}),
        )


# Rules of the scan engine itself: what happens to inputs it cannot analyse.
ANALYZER_ERROR = Rule(
    id="SCAN-ANALYZER-ERROR",
    title="An analyzer failed on this file",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "An analyzer stopped with an unexpected error while reading this file. The file was "
        "not fully checked, so Bastion cannot vouch for it: it fails closed."
    ),
    remediation="Treat the file as untrusted; report the error text to the Bastion maintainers.",
)
UNREADABLE = Rule(
    id="SCAN-UNREADABLE",
    title="File could not be read",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "The file exists but could not be opened or read (permissions, I/O error). It was not "
        "checked, so it fails closed."
    ),
    remediation="Make the file readable by the user running Bastion, or exclude it in the policy.",
)
SYMLINK_LOOP = Rule(
    id="SCAN-SYMLINK-LOOP",
    title="Symbolic link loop",
    severity=Severity.LOW,
    category=Category.COVERAGE,
    description=(
        "A symbolic link leads back into a folder already being walked; it was not followed."
    ),
    remediation="Remove the looping link.",
)
BROKEN_SYMLINK = Rule(
    id="SCAN-BROKEN-SYMLINK",
    title="Symbolic link to nothing",
    severity=Severity.INFO,
    category=Category.COVERAGE,
    description="A symbolic link points at a path that does not exist.",
)
EMPTY_MODEL_FILE = Rule(
    id="SCAN-EMPTY-FILE",
    title="Empty file named like a model or manifest",
    severity=Severity.INFO,
    category=Category.COVERAGE,
    description=(
        "The file has a name that suggests a model or dependency file but holds zero bytes; "
        "a loader will fail on it. Often a failed download or a Git LFS object never fetched."
    ),
    remediation="Fetch the real file (e.g. `git lfs pull`) or remove it.",
)
TOO_LARGE = Rule(
    id="SCAN-FILE-TOO-LARGE",
    title="File larger than the scan limit",
    severity=Severity.MEDIUM,
    category=Category.COVERAGE,
    description="The file is larger than `limits.max-file-size` and was not analysed.",
    remediation="Raise `limits.max-file-size` in the policy if the file is expected.",
)
IGNORE_EXPIRED = Rule(
    id="POLICY-IGNORE-EXPIRED",
    title="A policy ignore entry has expired",
    severity=Severity.LOW,
    category=Category.POLICY,
    description=(
        "An ignore entry in the policy has passed its expiry date and no longer suppresses "
        "findings. Re-assess the risk and either fix it or renew the entry with a new reason."
    ),
    remediation="Fix the underlying findings or renew the ignore entry with a new expiry.",
)

CORE_RULES: tuple[Rule, ...] = (
    ANALYZER_ERROR,
    UNREADABLE,
    SYMLINK_LOOP,
    BROKEN_SYMLINK,
    EMPTY_MODEL_FILE,
    TOO_LARGE,
    IGNORE_EXPIRED,
)
