"""From inventories, model files and a report to one :class:`~bastion.sbom.values.Sbom`.

Components are keyed by (ecosystem, name, version): a package pinned in both
``requirements.txt`` and ``uv.lock`` is one component naming both sources. A loose
requirement (``requests>=2``) is a version-less component only when nothing pins that
package. Vulnerabilities come from the report's findings, never from a second lookup, so
the SBOM's VEX says exactly what ``bastion scan``/``audit`` said, suppressions included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.findings import Finding, Report, Severity
from bastion.rules import TOO_LARGE, UNREADABLE
from bastion.sbom.installed import read_installed
from bastion.sbom.locks import Details, read_details
from bastion.sbom.values import (
    Affected,
    Artifact,
    Digest,
    ModelFile,
    Package,
    Sbom,
    VulnRecord,
    purl,
    text,
)
from bastion.supply import rules as supply_rules
from bastion.supply.inventory.interface import Dependency, Inventory, normalize

#: (ecosystem, normalized name, version or None for a loose requirement).
PackageKey = tuple[str, str, str | None]
#: Findings that mean some input is missing from the SBOM.
INCOMPLETE = frozenset({UNREADABLE.id, TOO_LARGE.id, supply_rules.MANIFEST_INVALID.id,
                        supply_rules.MANIFEST_TOO_LARGE.id, supply_rules.INCLUDE_SKIPPED.id})
_VULN_RULES = frozenset({supply_rules.VULNERABLE.id, supply_rules.MALICIOUS_PACKAGE.id})
_METADATA = ("/METADATA", "/PKG-INFO")


@dataclass
class _Builder:
    """One component while sources are merged into it."""

    names: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    digests: set[Digest] = field(default_factory=set)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    licenses: list[str] = field(default_factory=list)
    description: str = ""
    specifiers: set[str] = field(default_factory=set)
    required: bool = False


@dataclass
class _Graph:
    packages: dict[PackageKey, _Builder] = field(default_factory=dict)
    edges: dict[PackageKey, set[PackageKey]] = field(default_factory=dict)
    graph_sources: set[str] = field(default_factory=set)

    def builder(self, key: PackageKey) -> _Builder:
        return self.packages.setdefault(key, _Builder())


def assemble(report: Report, inventories: Iterable[Inventory], models: Sequence[ModelFile], *,
             root: str, problems: Iterable[str] = ()) -> Sbom:
    """The SBOM of one run: packages, edges, model files, VEX and what is missing."""
    graph = _Graph()
    for inventory in inventories:
        _add_inventory(graph, inventory)
    vulns = _vulnerabilities(report.findings, graph)
    _merge_loose(graph)
    refs = {key: _ref(key, builder) for key, builder in graph.packages.items()}
    packages = tuple(sorted((_package(key, ref, graph.packages[key]) for key, ref in
                             refs.items()), key=lambda p: p.ref))
    edges = {refs[key]: tuple(sorted({refs[t] for t in targets if t in refs and t != key}))
             for key, targets in graph.edges.items() if key in refs}
    found = [f"{f.location}: {f.message}" for f in report.findings if f.rule_id in INCOMPLETE]
    return Sbom(
        root=root, tool_version=report.tool_version, packages=packages,
        models=tuple(sorted(models, key=lambda m: m.path)),
        edges={k: v for k, v in sorted(edges.items()) if v},
        vulnerabilities=tuple(v.done(refs) for _, v in sorted(vulns.items())),
        problems=tuple(dict.fromkeys([*found, *problems])), notes=report.notes,
        graph_sources=tuple(sorted(graph.graph_sources)))


def root_name(paths: Sequence[str]) -> str:
    """The project the SBOM describes: the first path's folder name."""
    if not paths:
        return "environment"
    first = Path(paths[0]).absolute()
    folder = first if first.is_dir() else first.parent
    if folder.name in ("bin", "Scripts"):  # an interpreter: name its environment
        folder = folder.parent
    return folder.name or str(folder)


def _add_inventory(graph: _Graph, inventory: Inventory) -> None:
    details = read_details(inventory)
    requires: dict[PackageKey, tuple[str, ...]] = {}
    by_name: dict[str, PackageKey] = {}
    for dep in inventory.dependencies:
        key = _key(dep)
        builder = graph.builder(key)
        builder.names.add(dep.display_name or dep.name)
        builder.sources.add(dep.source)
        builder.required |= not dep.constraint
        if not dep.pinned and dep.specifier:
            builder.specifiers.add(text(dep.specifier))
        _add_details(builder, details, dep)
        if inventory.kind == "installed" and dep.source.endswith(_METADATA):
            info = read_installed(Path(dep.source))
            builder.licenses.extend(x for x in info.licenses if x not in builder.licenses)
            builder.description = builder.description or info.summary
            requires[key] = info.requires
        by_name.setdefault(dep.name, key)
    for key, names in requires.items():  # Requires-Dist → the version installed beside it
        graph.edges.setdefault(key, set()).update(by_name[n] for n in names if n in by_name)
    if any(requires.values()):
        graph.graph_sources.add("installed metadata")
    if details.graph:
        for (name, version), targets in details.edges.items():
            graph.edges.setdefault(("pypi", name, version), set()).update(
                ("pypi", n, v) for n, v in targets)
        graph.graph_sources.add(inventory.kind)


def _key(dep: Dependency) -> PackageKey:
    return (dep.ecosystem, dep.name, dep.version if dep.pinned and dep.version else None)


def _add_details(builder: _Builder, details: Details, dep: Dependency) -> None:
    found = details.packages.get((dep.name, dep.version or ""))
    if found is None:
        return
    builder.digests.update(found.digests)
    for name, artifact in found.artifacts.items():
        builder.artifacts.setdefault(name, artifact)


def _merge_loose(graph: _Graph) -> None:
    """A loose requirement (``requests>=2``) of a package some manifest pins is that pinned
    package: its sources and constraint move onto each pinned version of the name."""
    pinned: dict[tuple[str, str], list[_Builder]] = {}
    for key, builder in graph.packages.items():
        if key[2] is not None:
            pinned.setdefault(key[:2], []).append(builder)
    for key in [k for k in graph.packages if k[2] is None and k[:2] in pinned]:
        loose = graph.packages.pop(key)
        for builder in pinned[key[:2]]:
            builder.sources |= loose.sources
            builder.specifiers |= loose.specifiers
            builder.required |= loose.required
        graph.edges.pop(key, None)


def _ref(key: PackageKey, builder: _Builder) -> str:
    ecosystem, name, version = key
    spelled = sorted(n for n in builder.names if normalize(n) == name)
    return purl(ecosystem, spelled[0] if spelled else name, version)


def _package(key: PackageKey, ref: str, builder: _Builder) -> Package:
    ecosystem, name, version = key
    return Package(ref=ref, name=name, version=version, ecosystem=ecosystem,
                   sources=tuple(sorted(builder.sources)),
                   digests=tuple(sorted(builder.digests)),
                   artifacts=tuple(sorted(builder.artifacts.values())),
                   licenses=tuple(builder.licenses), description=builder.description,
                   specifier=", ".join(sorted(builder.specifiers)), optional=not builder.required)


@dataclass
class _Vuln:
    """One vulnerability while the findings naming it are merged."""

    first: Mapping[str, Any]
    severity: Severity
    affects: dict[PackageKey, Affected] = field(default_factory=dict)
    suppressed: list[str] = field(default_factory=list)
    active: bool = False

    def done(self, refs: Mapping[PackageKey, str]) -> VulnRecord:
        data = self.first
        affects = tuple(sorted((Affected(refs.get(k, a.ref), a.version, a.fix, a.fix_note)
                                for k, a in self.affects.items()), key=lambda a: a.ref))
        return VulnRecord(
            id=text(data.get("id")), aliases=tuple(text(a) for a in _list(data.get("aliases"))),
            summary=text(data.get("summary"), 1_000), severity=self.severity,
            malicious=bool(data.get("malicious")), modified=text(data.get("modified")),
            affects=affects, cvss=_cvss(data.get("cvss")),
            suppressed=None if self.active or not self.suppressed else self.suppressed[0])


def _vulnerabilities(findings: Iterable[Finding], graph: _Graph) -> dict[str, _Vuln]:
    """VEX entries from vulnerability findings (shape-checked: properties are JSON data)."""
    vulns: dict[str, _Vuln] = {}
    for finding in findings:
        props = finding.properties
        name, version = props.get("package"), props.get("version")
        if finding.rule_id not in _VULN_RULES or not isinstance(name, str) \
                or not isinstance(version, str):
            continue
        ecosystem = "conda" if props.get("ecosystem") == "conda" else "pypi"
        key: PackageKey = (ecosystem, normalize(name), version)
        graph.builder(key).sources.add(finding.location.path)
        graph.builder(key).required = True
        fix = props.get("fix_version")
        note = props.get("fix_note")
        for data in _list(props.get("vulnerabilities")):
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                continue
            severity = _severity(data.get("severity"), finding.severity)
            entry = vulns.setdefault(data["id"], _Vuln(data, severity))
            entry.severity = max(entry.severity, severity)
            entry.affects[key] = Affected(purl(ecosystem, normalize(name), version), version,
                                          fix if isinstance(fix, str) else None,
                                          note if isinstance(note, str) else None)
            if finding.suppression is None:
                entry.active = True
            else:
                entry.suppressed.append(finding.suppression.reason)
    return vulns


def _severity(value: object, default: Severity) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        return default


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _cvss(value: object) -> tuple[tuple[str, str], ...]:
    """OSV ``severity`` entries (``{"type": "CVSS_V3", "score": "CVSS:3.1/..."}``)."""
    found = []
    for entry in _list(value)[:10]:
        if isinstance(entry, dict):
            kind, vector = entry.get("type"), entry.get("score") or entry.get("vector")
            if isinstance(kind, str) and isinstance(vector, str):
                found.append((text(kind, 20), text(vector, 300)))
    return tuple(found)
