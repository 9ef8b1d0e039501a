"""CycloneDX 1.6 JSON: the SBOM (with VEX and ML-BOM) of a scan, an audit or ``bastion sbom``.

Built with cyclonedx-python-lib's model classes and written by its JSON outputter, so the
document is the library's, not a hand-made imitation. The library costs ~0.3 s to import,
so it is an optional extra (``bastion-mlsec[sbom]``), imported only here and only when a
CycloneDX document is asked for.

``--format cyclonedx`` on ``scan``/``audit`` renders a report: the renderer reads the
report's roots again for the inventory and model files (see :func:`bastion.sbom.from_report`).
With ``SOURCE_DATE_EPOCH`` set (the reproducible-builds convention), the timestamp is that
date and the serial number is derived from the content: the same inputs give the same bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bastion.errors import UsageError
from bastion.findings import Report, Severity
from bastion.rules import Rule

if TYPE_CHECKING:  # imported when rendering: every CLI start imports this module
    from cyclonedx.model.component import Component
    from cyclonedx.model.license import License
    from cyclonedx.model.vulnerability import VulnerabilityRating, VulnerabilitySource

    from bastion.sbom.values import ModelFile, Package, Sbom, VulnRecord

SPEC_VERSION = "1.6"
#: Where a vulnerability id points, by prefix: (source name, URL template).
_SOURCES = {"CVE-": ("NVD", "https://nvd.nist.gov/vuln/detail/{id}"),
            "GHSA-": ("GitHub", "https://github.com/advisories/{id}"),
            "PYSEC-": ("OSV", "https://osv.dev/vulnerability/{id}"),
            "MAL-": ("OSV", "https://osv.dev/vulnerability/{id}")}
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}\Z")
_INSTALL_HINT = "install the extra: pip install 'bastion-mlsec[sbom]'"


def render_cyclonedx(report: Report, rules: Mapping[str, Rule]) -> str:
    """The renderer of ``--format cyclonedx`` (``rules`` are not needed: VEX carries ids)."""
    from bastion.sbom.generate import from_report

    require_library()
    timestamp = epoch_timestamp()
    return to_cyclonedx(from_report(report), timestamp=timestamp,
                        reproducible=timestamp is not None)


def require_library() -> None:
    """Fail with a clear message, before any work, when the optional library is missing."""
    try:
        import cyclonedx.output.json  # noqa: F401
        import packageurl  # noqa: F401
    except ImportError:
        raise UsageError("CycloneDX output needs cyclonedx-python-lib", hint=_INSTALL_HINT
                         ) from None


def epoch_timestamp() -> datetime | None:
    """``SOURCE_DATE_EPOCH`` as a UTC time, or None when unset or not a number."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    try:
        return datetime.fromtimestamp(int(value), UTC) if value else None
    except (ValueError, OverflowError, OSError):
        return None


def to_cyclonedx(sbom: Sbom, *, timestamp: datetime | None = None,
                 reproducible: bool = False) -> str:
    """The CycloneDX 1.6 JSON text of an SBOM.

    ``reproducible``: the serial number is derived from the content, and the timestamp is
    ``timestamp`` or, without one, left out (it is optional): same inputs, same bytes.
    """
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    require_library()
    root = Component(type=ComponentType.APPLICATION, name=sbom.root, bom_ref="root")
    tool = Component(type=ComponentType.APPLICATION, name="bastion", version=sbom.tool_version)
    notes = [Property(name="bastion:note", value=n) for n in sbom.notes]
    notes += [Property(name="bastion:incomplete", value=p) for p in sbom.problems]
    notes += [Property(name="bastion:dependency-graph", value=g) for g in sbom.graph_sources]
    metadata = BomMetaData(component=root, tools=ToolRepository(components=[tool]),
                           properties=notes, timestamp=timestamp)
    packages = {p.ref: _package(p) for p in sbom.packages}
    models = {m.ref: _model(m) for m in sbom.models}
    bom = Bom(metadata=metadata, components=[*packages.values(), *models.values()],
              vulnerabilities=[_vulnerability(v) for v in sbom.vulnerabilities])
    _graph(bom, root, sbom, {**packages, **models})
    text = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2)
    return _fixed_serial(text, keep_time=timestamp is not None) if reproducible else text + "\n"


def _fixed_serial(text: str, *, keep_time: bool) -> str:
    """Replace the random serial number by one derived from the rest of the document."""
    import hashlib
    import json
    import uuid

    doc = json.loads(text)
    doc.pop("serialNumber", None)
    if not keep_time:
        doc.get("metadata", {}).pop("timestamp", None)
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    serial = uuid.UUID(bytes=hashlib.sha256(body).digest()[:16], version=5)
    doc = {"serialNumber": f"urn:uuid:{serial}", **doc}
    order = ["$schema", "bomFormat", "specVersion", "serialNumber", "version"]
    ordered = {k: doc[k] for k in order if k in doc} | {k: v for k, v in doc.items()
                                                          if k not in order}
    return json.dumps(ordered, indent=2) + "\n"


def _package(package: Package) -> Component:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, Property, XsUri
    from cyclonedx.model.component import Component, ComponentScope, ComponentType
    from packageurl import PackageURL

    purl = PackageURL.from_string(package.ref)
    props = [Property(name="bastion:source", value=s) for s in package.sources]
    if package.specifier:
        props.append(Property(name="bastion:specifier", value=package.specifier))
    refs = [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(a.url),
                              comment=a.name, hashes=[_hash(d.algorithm, d.value)
                                                      for d in a.digests])
            for a in package.artifacts if a.url]
    return Component(
        type=ComponentType.LIBRARY, name=purl.name, version=package.version,
        bom_ref=package.ref, purl=purl, description=package.description or None,
        scope=ComponentScope.OPTIONAL if package.optional else ComponentScope.REQUIRED,
        hashes=[_hash(d.algorithm, d.value) for d in package.digests],
        licenses=_licenses(package.licenses), external_references=refs, properties=props)


def _hash(algorithm: str, value: str) -> Any:
    from cyclonedx.model import HashAlgorithm, HashType

    return HashType(alg=HashAlgorithm(algorithm), content=value)


def _licenses(values: tuple[str, ...]) -> list[License]:
    """One license string may be an SPDX expression; several are each an id or a name
    (CycloneDX forbids an expression beside other licenses)."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.spdx import fixup_id

    factory = LicenseFactory()
    if len(values) == 1:
        return [factory.make_from_string(values[0])]
    found: list[License] = []
    for value in values:
        spdx = fixup_id(value)
        found.append(factory.make_with_id(spdx) if spdx else factory.make_with_name(value))
    return found


def _model(model: ModelFile) -> Component:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType

    props = {"bastion:path": model.path, "bastion:size": str(model.size),
             "bastion:model:format": model.format, "bastion:scan:verdict": model.verdict}
    if model.verdict != "not-scanned":
        props["bastion:scan:findings"] = str(model.findings)
        props["bastion:scan:max-severity"] = model.worst.value if model.worst else "none"
    if model.problem:
        props["bastion:incomplete"] = model.problem
    properties = [Property(name=k, value=v) for k, v in props.items()]
    properties += [Property(name="bastion:scan:rule", value=r) for r in model.rules]
    kind = (ComponentType.MACHINE_LEARNING_MODEL if model.kind == "machine-learning-model"
            else ComponentType.FILE)
    name = model.path.rstrip("/").rsplit("/", 1)[-1] or model.path
    hashes = [_hash("SHA-256", model.sha256)] if model.sha256 else []
    return Component(type=kind, name=name, bom_ref=model.ref, hashes=hashes,
                     properties=properties)


def _graph(bom: Any, root: Component, sbom: Sbom, components: dict[str, Component]) -> None:
    """Edges from lock files and metadata; the root depends on every package nothing else
    requires (the direct dependencies, or all of them for a requirements file) and on the
    model files. Built directly: ``Bom.register_dependency`` scans the whole graph per call."""
    from cyclonedx.model.dependency import Dependency

    required = {t for targets in sbom.edges.values() for t in targets}
    tops = [c for ref, c in components.items() if ref not in required]
    graph = [Dependency(ref=root.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in tops])]
    for ref, targets in sbom.edges.items():
        if ref in components:
            graph.append(Dependency(ref=components[ref].bom_ref, dependencies=[
                Dependency(ref=components[t].bom_ref) for t in targets if t in components]))
    bom.dependencies = graph


def _vulnerability(vuln: VulnRecord) -> Any:
    from cyclonedx.model import Property
    from cyclonedx.model.impact_analysis import (
        ImpactAnalysisAffectedStatus,
        ImpactAnalysisResponse,
        ImpactAnalysisState,
    )
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        Vulnerability,
        VulnerabilityAnalysis,
        VulnerabilityReference,
    )

    affects = [BomTarget(ref=a.ref, versions=[BomTargetVersionRange(
        version=a.version, status=ImpactAnalysisAffectedStatus.AFFECTED)]) for a in vuln.affects]
    fixes = [f"upgrade {_name(a.ref)} {a.version} to {a.fix}" if a.fix else
             f"{_name(a.ref)} {a.version}: no fixed version ({a.fix_note or 'none known'})"
             for a in vuln.affects]
    if vuln.suppressed is not None:
        analysis = VulnerabilityAnalysis(responses=[ImpactAnalysisResponse.WILL_NOT_FIX],
                                         detail=f"accepted in the policy: {vuln.suppressed}")
    else:
        analysis = VulnerabilityAnalysis(
            state=ImpactAnalysisState.IN_TRIAGE,
            responses=[ImpactAnalysisResponse.UPDATE] if any(a.fix for a in vuln.affects)
            else [], detail="affected version matched by Bastion against the advisory's ranges")
    props = [Property(name="bastion:malicious", value="true")] if vuln.malicious else []
    return Vulnerability(
        bom_ref=f"vuln:{vuln.id}", id=vuln.id, source=_source(vuln.id),
        references=[VulnerabilityReference(id=a, source=_source(a)) for a in vuln.aliases],
        ratings=_ratings(vuln), description=vuln.summary or None,
        recommendation="; ".join(fixes) or None, updated=_time(vuln.modified),
        affects=affects, analysis=analysis, properties=props)


def _name(ref: str) -> str:
    return ref.split("/", 1)[-1].split("@", 1)[0]


def _source(ident: str) -> VulnerabilitySource:
    from cyclonedx.model import XsUri
    from cyclonedx.model.vulnerability import VulnerabilitySource

    name, url = next((v for k, v in _SOURCES.items() if ident.upper().startswith(k)),
                     ("OSV", "https://osv.dev/vulnerability/{id}"))
    if not _PLAIN_ID.match(ident):  # never build a URL from an odd id (databases are input)
        return VulnerabilitySource(name=name)
    return VulnerabilitySource(name=name, url=XsUri(url.format(id=ident)))


def _ratings(vuln: VulnRecord) -> list[VulnerabilityRating]:
    """CVSS ratings when the report carries the vectors, else Bastion's severity."""
    from decimal import Decimal

    from cyclonedx.model.vulnerability import VulnerabilityRating, VulnerabilityScoreSource

    from bastion.supply.advisories.cvss import cvss3_base_score, cvss4_severity, score_severity

    ratings = []
    for kind, vector in vuln.cvss:
        if kind == "CVSS_V3" and (score := cvss3_base_score(vector)) is not None:
            method = (VulnerabilityScoreSource.CVSS_V3_1 if vector.startswith("CVSS:3.1/")
                      else VulnerabilityScoreSource.CVSS_V3)
            ratings.append(VulnerabilityRating(
                source=_source(vuln.id), score=Decimal(str(score)),
                severity=_severity(score_severity(score)), method=method, vector=vector))
        elif kind == "CVSS_V4" and (band := cvss4_severity(vector)) is not None:
            ratings.append(VulnerabilityRating(
                source=_source(vuln.id), severity=_severity(band),
                method=VulnerabilityScoreSource.CVSS_V4, vector=vector))
    if not ratings:
        ratings.append(VulnerabilityRating(
            severity=_severity(vuln.severity), method=VulnerabilityScoreSource.OTHER,
            justification="Bastion's severity: the advisory's CVSS vector or database "
                          "rating, medium when it gives none"))
    return ratings


def _severity(severity: Severity) -> Any:
    from cyclonedx.model.vulnerability import VulnerabilitySeverity

    return VulnerabilitySeverity(severity.value)


def _time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
