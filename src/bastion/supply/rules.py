"""The rules of the supply-chain audit: known vulnerabilities, hygiene, and coverage.

Malicious-package heuristics (install hooks, exfiltration, typosquats) are a separate
module with its own rules; :data:`MALICIOUS_PACKAGE` here is raised from the advisory
database alone (OSV ``MAL-`` records and takeover reports such as ``ctx``).
"""

from __future__ import annotations

from bastion.findings import Category, Reference, Severity
from bastion.rules import Rule


def _refs(*ids: str) -> tuple[Reference, ...]:
    """OWASP ML06 (supply chain) and ATLAS AML.T0010 (ML supply chain compromise), plus ids."""
    return tuple(Reference.of(i) for i in ("ML06", "AML.T0010", *ids))


VULNERABLE = Rule(
    id="SUPPLY-VULNERABLE-DEPENDENCY",
    title="Dependency with known vulnerabilities",
    severity=Severity.HIGH,
    category=Category.VULNERABILITY,
    description=(
        "A pinned or installed package version is affected by published advisories (OSV: "
        "PYSEC, GHSA, CVE). The finding's severity is that of the worst advisory, from its "
        "CVSS vector where it has one. ML stacks pull in hundreds of packages; one vulnerable "
        "deserializer or web endpoint in a training or serving image is enough."
    ),
    remediation="Upgrade to the version named in the finding (`bastion audit --fix` rewrites "
                "requirements files), or record an accepted risk in the policy.",
    references=_refs("CWE-1395"),
)
MALICIOUS_PACKAGE = Rule(
    id="SUPPLY-MALICIOUS-PACKAGE",
    title="Known malicious package version",
    severity=Severity.CRITICAL,
    category=Category.MALICIOUS_PACKAGE,
    description=(
        "The advisory database reports this package version as malicious: malware published "
        "under a look-alike name, or a real project taken over (the 2022 `ctx` release sent "
        "`os.environ` to its author). Installing it ran the attacker's code."
    ),
    remediation="Remove the package, rotate every credential the environment could read, "
                "and rebuild the environment from a clean lock file.",
    references=_refs("CWE-506"),
)
UNPINNED = Rule(
    id="SUPPLY-UNPINNED",
    title="Requirement not pinned to one version",
    severity=Severity.LOW,
    category=Category.DEPENDENCY_HYGIENE,
    description=(
        "A requirement allows a range of versions, so each install may resolve to a new "
        "release, including a compromised one, and the audit cannot say which version runs."
    ),
    remediation="Pin exact versions (`name==1.2.3`), e.g. with `uv pip compile` or "
                "`pip-compile`, and audit the pinned file.",
    references=_refs("CWE-1357"),
)
NO_HASH = Rule(
    id="SUPPLY-NO-HASH",
    title="Pinned dependency without a hash",
    severity=Severity.INFO,
    category=Category.DEPENDENCY_HYGIENE,
    description=(
        "Without `--hash` (or a lock file's hashes), pip installs whatever file the index "
        "serves for that version; a hash makes a swapped or re-uploaded artifact fail."
    ),
    remediation="Generate hashes (`pip-compile --generate-hashes`, `uv pip compile "
                "--generate-hashes`) and install with `--require-hashes`.",
    references=_refs("CWE-494"),
)
NOT_AUDITABLE = Rule(
    id="SUPPLY-NOT-AUDITABLE",
    title="Dependency that cannot be matched against advisories",
    severity=Severity.INFO,
    category=Category.COVERAGE,
    description=(
        "A direct URL, VCS checkout, local path or editable install has no published version, "
        "so no advisory can be matched to it; its code is whatever that source holds."
    ),
    remediation="Prefer released versions from an index; otherwise review that source.",
    references=_refs(),
)
REQUIREMENT_INVALID = Rule(
    id="SUPPLY-REQUIREMENT-INVALID",
    title="Requirement line that does not parse",
    severity=Severity.LOW,
    category=Category.MALFORMED,
    description="A line or entry of a manifest is not a valid requirement; it was not audited "
                "and pip or the lock tool may reject or misread it.",
    remediation="Fix the line (PEP 508 syntax).",
)
INCLUDE_SKIPPED = Rule(
    id="SUPPLY-INCLUDE-SKIPPED",
    title="Included requirements file not read",
    severity=Severity.LOW,
    category=Category.COVERAGE,
    description="A `-r`/`-c` include is missing, remote, loops back, or nests too deep; the "
                "requirements it holds were not audited.",
    remediation="Audit the included file directly, or fix the include.",
)
MANIFEST_INVALID = Rule(
    id="SUPPLY-MANIFEST-INVALID",
    title="Manifest or lock file does not parse",
    severity=Severity.MEDIUM,
    category=Category.MALFORMED,
    description="A lock file or manifest is not valid TOML/JSON/YAML or lacks its required "
                "structure. Nothing in it was audited (fail closed); the tool that reads it "
                "would fail or install something else.",
    remediation="Regenerate the file with its tool (`uv lock`, `poetry lock`, `pipenv lock`).",
)
MANIFEST_TOO_LARGE = Rule(
    id="SUPPLY-MANIFEST-TOO-LARGE",
    title="Manifest over the audit's size limits",
    severity=Severity.MEDIUM,
    category=Category.RESOURCE,
    description="The manifest is larger than any real one (bytes, lines or entries); only the "
                "part within the limits was audited.",
    remediation="Check where the file came from; split it if it is genuine.",
    references=(Reference.of("CWE-400"),),
)
UNDETERMINED = Rule(
    id="SUPPLY-ADVISORY-UNDETERMINED",
    title="Advisory that could not be evaluated for this version",
    severity=Severity.LOW,
    category=Category.COVERAGE,
    description="The package version (or the advisory's range) is not a PEP 440 / SemVer "
                "version, so the advisory's ranges cannot place it; it may be affected.",
    remediation="Check the advisory by hand and record the outcome in the policy.",
)
DB_UNAVAILABLE = Rule(
    id="SUPPLY-DB-UNAVAILABLE",
    title="Advisory database could not be opened",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description="No advisory database could be read, so the dependencies were not checked "
                "for known vulnerabilities (fail closed).",
    remediation="Run `bastion db update` (or point BASTION_DB at a database).",
)

RULES: tuple[Rule, ...] = (
    VULNERABLE, MALICIOUS_PACKAGE, UNPINNED, NO_HASH, NOT_AUDITABLE, REQUIREMENT_INVALID,
    INCLUDE_SKIPPED, MANIFEST_INVALID, MANIFEST_TOO_LARGE, UNDETERMINED, DB_UNAVAILABLE,
)
