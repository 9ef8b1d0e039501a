"""What an SBOM says, as Bastion's own frozen values, independent of any output format.

The CycloneDX document (:mod:`bastion.report.cyclonedx`) is one rendering of an
:class:`Sbom`; keeping the collected facts in plain values keeps the collection testable
without the CycloneDX library and lets another format (SPDX) render the same facts later.
Every text that may come from a scanned file is bounded and made visible here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from bastion.findings import Severity, clip

#: Hash algorithms a lock file may name, as CycloneDX spells them, and their hex length.
ALGORITHMS: Mapping[str, tuple[str, int]] = {
    "md5": ("MD5", 32), "sha1": ("SHA-1", 40), "sha256": ("SHA-256", 64),
    "sha384": ("SHA-384", 96), "sha512": ("SHA-512", 128), "sha3256": ("SHA3-256", 64),
    "sha3384": ("SHA3-384", 96), "sha3512": ("SHA3-512", 128),
}
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
#: A URL kept in the SBOM: http(s), no spaces or characters an IRI may not hold.
_URL = re.compile(r"https?://[^\s<>\"{}|\\^`\x00-\x1f\x7f]+\Z")
MAX_URL = 2_000
#: Longest name, version or description kept from a manifest.
MAX_FIELD = 200


@dataclass(frozen=True, order=True)
class Digest:
    """One hash of a file: the CycloneDX algorithm name and lowercase hex content."""

    algorithm: str
    value: str

    @classmethod
    def parse(cls, algorithm: str, value: str) -> Digest | None:
        """A digest from a lock file's spelling (``sha256``, ``SHA-256``), or None if malformed."""
        known = ALGORITHMS.get(re.sub(r"[-_]", "", algorithm.strip().lower()))
        value = value.strip()
        if known is None or len(value) != known[1] or not _HEX.match(value):
            return None
        return cls(known[0], value.lower())

    @classmethod
    def from_text(cls, text: str) -> Digest | None:
        """pip's and uv's ``alg:hex`` form (``sha256:abc...``), or None."""
        algorithm, sep, value = text.partition(":")
        return cls.parse(algorithm, value) if sep else None


@dataclass(frozen=True, order=True)
class Artifact:
    """A distribution file a lock file names (a wheel, an sdist) with its hashes."""

    name: str
    url: str | None
    digests: tuple[Digest, ...]


def safe_url(value: object) -> str | None:
    """A URL fit for the SBOM, or None: hostile lock files must not break the document."""
    if isinstance(value, str) and len(value) <= MAX_URL and _URL.match(value):
        return value
    return None


def text(value: object, limit: int = MAX_FIELD) -> str:
    """A bounded, visible string from an untrusted manifest value ('' for non-strings)."""
    return clip(value, limit) if isinstance(value, str) else ""


def purl(ecosystem: str, name: str, version: str | None) -> str:
    """The package URL: ``pkg:pypi/name@version``, or ``pkg:conda/...``.

    The purl specification's PyPI rule: the name lowercased with ``_`` as ``-`` (dots kept),
    everything else percent-encoded. Written by hand (the same text ``packageurl`` writes, a
    test pins it) so that collecting an SBOM needs no third-party import.
    """
    kind = "conda" if ecosystem == "conda" else "pypi"
    shown = name.lower().replace("_", "-") if kind == "pypi" else name
    ref = f"pkg:{kind}/{quote(shown, safe='')}"
    return f"{ref}@{quote(version, safe='')}" if version else ref


@dataclass(frozen=True)
class Package:
    """A dependency component: one name and version, merged over every manifest naming it."""

    ref: str  # the purl; unique in one SBOM
    name: str  # PEP 503 normalized
    version: str | None
    ecosystem: str
    sources: tuple[str, ...]
    digests: tuple[Digest, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    #: SPDX expression, SPDX id or license name, as the metadata gives them.
    licenses: tuple[str, ...] = ()
    description: str = ""
    #: The constraints as written (``>=2``), also those a pinned version satisfies elsewhere.
    specifier: str = ""
    #: Only a constraints-file entry names it: it pins, but does not require, the package.
    optional: bool = False


@dataclass(frozen=True)
class ModelFile:
    """A file the model scanner analyses: its hash, detected format and scan verdict."""

    ref: str
    path: str
    size: int
    format: str
    #: ``"machine-learning-model"`` for model formats, ``"file"`` for generic archives.
    kind: str
    sha256: str | None
    #: Why there is no hash (too large, unreadable), else None.
    problem: str | None = None
    #: ``"pass"``, ``"fail"`` or ``"not-scanned"``; the worst severity and the rules found.
    verdict: str = "not-scanned"
    worst: Severity | None = None
    findings: int = 0
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Affected:
    """One component a vulnerability affects, and the fix for it."""

    ref: str
    version: str
    fix: str | None
    fix_note: str | None = None


@dataclass(frozen=True)
class VulnRecord:
    """A known vulnerability (VEX entry): ids, rating, what it affects and the fix."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    malicious: bool
    modified: str
    affects: tuple[Affected, ...]
    #: OSV ``severity`` entries when the report carries them: (type, vector).
    cvss: tuple[tuple[str, str], ...] = ()
    #: The policy's reason when every finding naming it is suppressed.
    suppressed: str | None = None


@dataclass(frozen=True)
class Sbom:
    """Everything one SBOM says, in a stable order (sorted by reference)."""

    root: str
    tool_version: str
    packages: tuple[Package, ...]
    models: tuple[ModelFile, ...]
    #: Component reference → the references it depends on (lock files and installed
    #: metadata only; requirements files record no edges).
    edges: Mapping[str, tuple[str, ...]]
    vulnerabilities: tuple[VulnRecord, ...]
    #: Why the SBOM may be incomplete: unreadable inputs, truncated manifests, unhashed files.
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Manifest kinds whose dependency edges made the graph (``uv.lock``...).
    graph_sources: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        return not self.problems
