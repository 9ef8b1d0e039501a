"""From an inventory and the advisory store to findings: the one place findings are made.

``bastion scan`` (through the analyzer) and ``bastion audit`` both call :func:`assess`, so a
vulnerable pin reads the same wherever it is found. One finding per vulnerable package,
listing every vulnerability (advisories merged by alias) with the ids, and the smallest
upgrade that clears them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bastion.findings import Finding, Location, Reference
from bastion.supply import rules
from bastion.supply.advisories.osv import Advisory
from bastion.supply.advisories.store import AdvisoryStore, DbInfo
from bastion.supply.fix import Fix, smallest_fix
from bastion.supply.inventory.interface import Dependency, Inventory, SkipKind
from bastion.supply.match import MatchResult, Vulnerability, match

#: Most references (CVE, GHSA, PYSEC) attached to one finding.
MAX_REFERENCES = 40
_REF_PREFIXES = ("CVE-", "GHSA-", "PYSEC-")

#: Where a finding about a manifest points: its source name and line → a location.
Locate = Callable[[str, int | None], Location]


@dataclass(frozen=True)
class Assessment:
    """One vulnerable dependency: what affects it and the fix (for ``--fix`` and reports)."""

    dependency: Dependency
    inventory_kind: str
    result: MatchResult
    fix: Fix


def default_locate(source: str, line: int | None) -> Location:
    return Location(path=source, line=line)


def assess(inventory: Inventory, store: AdvisoryStore | None,
           locate: Locate = default_locate) -> tuple[list[Finding], list[Assessment]]:
    """Findings for one inventory; with no store, only hygiene and coverage findings."""
    findings = list(_skipped(inventory, locate))
    findings.extend(_hygiene(inventory, locate))
    findings.extend(_typosquats(inventory, locate))
    assessments: list[Assessment] = []
    if store is not None:
        pinned = [d for d in inventory.dependencies if d.pinned and d.version]
        known = store.advisories_for(d.name for d in pinned)
        for dep in pinned:
            advisories = known.get(dep.name, [])
            if not advisories or dep.version is None:
                continue
            result = match(dep.name, dep.version, advisories)
            if result.undetermined:
                findings.append(_undetermined(dep, result, locate))
            if result.vulnerabilities:
                hits = [a for v in result.vulnerabilities for a in v.advisories]
                fix = smallest_fix(dep.name, dep.version, advisories, hits)
                assessments.append(Assessment(dep, inventory.kind, result, fix))
                findings.extend(_vulnerable(dep, result.vulnerabilities, fix, advisories, locate))
    return findings, assessments


def _skipped(inventory: Inventory, locate: Locate) -> Iterator[Finding]:
    rule_of = {SkipKind.INVALID: rules.REQUIREMENT_INVALID,
               SkipKind.NOT_AUDITABLE: rules.NOT_AUDITABLE,
               SkipKind.INCLUDE: rules.INCLUDE_SKIPPED,
               SkipKind.MANIFEST_INVALID: rules.MANIFEST_INVALID,
               SkipKind.TOO_LARGE: rules.MANIFEST_TOO_LARGE}
    for skip in inventory.skipped:
        yield rule_of[skip.kind].finding(locate(skip.source, skip.line), skip.reason,
                                         evidence=skip.text or None)


def _hygiene(inventory: Inventory, locate: Locate) -> Iterator[Finding]:
    deps = list(inventory.dependencies)
    pinned_names = {d.name for d in deps if d.pinned}
    if inventory.pins_expected:
        for dep in deps:
            if not dep.pinned and dep.name not in pinned_names:
                shown = dep.specifier or "any version"
                yield rules.UNPINNED.finding(
                    locate(dep.source, dep.line),
                    f"{dep.display_name or dep.name} is not pinned to one version ({shown})",
                    evidence=dep.raw or None, properties={"package": dep.name})
    pinned = [d for d in deps if d.pinned]
    if not inventory.hashes_expected or not pinned:
        return
    hashed = [d for d in pinned if d.hashes]
    if not hashed:
        names = ", ".join(d.name for d in pinned[:10]) + (", ..." if len(pinned) > 10 else "")
        yield rules.NO_HASH.finding(
            locate(inventory.source, None),
            f"none of the {len(pinned)} pinned dependencies has a hash", evidence=names,
            properties={"packages": [d.name for d in pinned[:200]]})
        return
    for dep in pinned:
        if not dep.hashes:
            yield rules.NO_HASH.finding(
                locate(dep.source, dep.line),
                f"{dep.label} has no hash while others in the file do; pip's "
                "--require-hashes mode will refuse to install", evidence=dep.raw or None,
                properties={"package": dep.name})


def _undetermined(dep: Dependency, result: MatchResult, locate: Locate) -> Finding:
    ids = ", ".join(result.undetermined[:20])
    return rules.UNDETERMINED.finding(
        locate(dep.source, dep.line),
        f"{dep.label}: advisories {ids} could not be evaluated (version not orderable)",
        evidence=ids, properties={"package": dep.name, "advisories": list(result.undetermined)})


def _vulnerable(dep: Dependency, vulns: Sequence[Vulnerability], fix: Fix,
                advisories: Sequence[Advisory], locate: Locate) -> Iterator[Finding]:
    malicious = [v for v in vulns if v.malicious]
    plain = [v for v in vulns if not v.malicious]
    where = locate(dep.source, dep.line)
    if malicious:
        yield rules.MALICIOUS_PACKAGE.finding(
            where, f"{dep.label} is a known malicious release: {_ids(malicious)}",
            evidence=_evidence(malicious), references=_refs(malicious),
            properties=_properties(dep, malicious, fix))
    if plain:
        count = f"{len(plain)} known vulnerabilit{'y' if len(plain) == 1 else 'ies'}"
        remediation = (f"Upgrade to {dep.display_name or dep.name}=={fix.version}, the smallest "
                       f"version that clears every advisory." if fix.version else
                       f"No fix: {fix.reason}. Remove or replace the package, or accept the "
                       "risk with a policy ignore entry.")
        yield rules.VULNERABLE.finding(
            where, f"{dep.label} has {count}: {_ids(plain)}", evidence=_evidence(plain),
            severity=max(v.severity for v in plain), remediation=remediation,
            references=_refs(plain), properties=_properties(dep, plain, fix))


def _ids(vulns: Sequence[Vulnerability]) -> str:
    parts = []
    for vuln in vulns:
        others = [i for i in vuln.ids if i != vuln.primary]
        parts.append(vuln.primary + (f" ({', '.join(others)})" if others else ""))
    return "; ".join(parts)


def _evidence(vulns: Sequence[Vulnerability]) -> str:
    return "\n".join(f"{v.primary}: {v.headline}" for v in vulns)


def _refs(vulns: Sequence[Vulnerability]) -> list[Reference]:
    refs: list[Reference] = []
    for vuln in vulns:
        for ident in vuln.ids:
            if ident.upper().startswith(_REF_PREFIXES) and len(refs) < MAX_REFERENCES:
                refs.append(Reference.of(ident))
    return list(dict.fromkeys(refs))


def _fixed_in(vuln: Vulnerability, name: str) -> list[str]:
    return sorted({e.version for a in vuln.advisories for entry in a.for_package(name)
                   for r in entry.ranges for e in r.events if e.kind == "fixed"})


def _properties(dep: Dependency, vulns: Sequence[Vulnerability], fix: Fix) -> dict[str, Any]:
    return {
        "package": dep.name, "version": dep.version, "ecosystem": dep.ecosystem,
        "fix_version": fix.version, "fix_note": fix.reason or None,
        "vulnerabilities": [
            {"id": v.primary, "aliases": [i for i in v.ids if i != v.primary],
             "severity": v.severity.value, "summary": v.headline, "malicious": v.malicious,
             "fixed_in": _fixed_in(v, dep.name),
             "modified": max(a.modified for a in v.advisories)}
            for v in vulns],
    }


def db_notes(info: DbInfo, today: date | None = None) -> tuple[str, ...]:
    """What every report that used the database says about it: source, date, age."""
    age = info.age_days(today)
    aged = f", {age} days old" if age is not None else ""
    notes = [f"advisory database: {info.source}; data as of {info.date or 'unknown'}{aged}; "
             f"{info.count} advisories for {info.packages} packages. Run `bastion db update` "
             "for current advisories."]
    if info.stale(today):
        notes.append(f"warning: the advisory database is older than 30 days{aged}: "
                     "vulnerabilities published since are not reported. Run `bastion db update`.")
    return tuple(notes)


def _typosquats(inventory: Inventory, locate: Locate) -> list[Finding]:
    """Dependency names that imitate popular projects (``reqeusts``, ``t0rch``)."""
    names = [(d.display_name or d.name, locate(d.source, d.line))
             for d in inventory.dependencies if d.ecosystem == "pypi" and not d.constraint]
    if not names:
        return []
    from bastion.supply.heuristics.typosquat import typosquat_findings

    return list(typosquat_findings(names))
