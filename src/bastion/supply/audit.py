"""``bastion audit`` as a library call: manifests and environments in, a report out.

Paths may be manifest files (any name: an explicitly named file that is not a known
manifest is read as a requirements file), folders (walked for manifests by name, with the
policy's excludes), ``site-packages`` folders or virtual environments (read from installed
metadata), and ``python`` an interpreter whose environment is read the same way, without
running it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bastion import __version__
from bastion.errors import UsageError
from bastion.findings import Finding, Report, ScanStats, Skipped
from bastion.policy import DEFAULT, Policy, apply_policy
from bastion.supply.advisories.store import AdvisoryStore
from bastion.supply.assess import Assessment, assess, db_notes
from bastion.supply.inventory import (
    REQUIREMENTS,
    Inventory,
    is_site_packages,
    read_environment,
    read_manifest,
    reader_for,
    site_packages_of,
)
from bastion.walk import check_roots, walk


@dataclass(frozen=True)
class AuditResult:
    report: Report
    assessments: tuple[Assessment, ...]
    inventories: tuple[Inventory, ...]


def _sort_key(f: Finding) -> tuple[int, str, int, str, str]:
    return (-f.severity.rank, f.location.path, f.location.line or 0, f.rule_id, f.message)


def _environment_roots(path: Path) -> list[Path] | None:
    """site-packages folders when ``path`` is an environment, else None (walk it)."""
    if not path.is_dir():
        return None
    if is_site_packages(path):
        return [path]
    if (path / "pyvenv.cfg").is_file() or (path / "conda-meta").is_dir():
        return site_packages_of(path)
    return None


def collect(paths: Sequence[str], policy: Policy, python: Path | None = None
            ) -> tuple[list[Inventory], list[Finding], list[Skipped], int]:
    """Read every inventory under the paths: (inventories, walk findings, skips, files)."""
    check_roots(paths)
    inventories: list[Inventory] = []
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    files = 0
    envs: list[Path] = []
    if python is not None:
        found = site_packages_of(python)
        if not found:
            raise UsageError(f"no site-packages folder found for {python}",
                             hint="give the interpreter of a virtual environment, or the "
                                  "site-packages folder itself")
        envs.extend(found)
    walked: list[str] = []
    for root in paths:
        env = _environment_roots(Path(root))
        if env is None:
            walked.append(root)
        else:
            envs.extend(env)
    for env_path in envs:
        inventories.append(read_environment(env_path, str(env_path).replace("\\", "/")))
    explicit = {r.replace("\\", "/") for r in walked if Path(r).is_file()}
    for item in walk(walked, policy) if walked else ():
        if isinstance(item, Finding):
            findings.append(item)
            continue
        if isinstance(item, Skipped):
            skipped.append(item)
            continue
        files += 1
        reader = reader_for(item.path.name) or (REQUIREMENTS if item.display in explicit
                                                else None)
        if reader is None:
            continue
        try:
            inventories.append(read_manifest(item.path, item.display, reader))
        except OSError as exc:
            skipped.append(Skipped(path=item.display, reason=f"cannot read: {exc}"))
    return inventories, findings, skipped, files


def audit(paths: Sequence[str], store: AdvisoryStore | None, policy: Policy = DEFAULT, *,
          python: Path | None = None, policy_source: str = "") -> AuditResult:
    """Audit manifests and environments against the advisory store; never prints."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    inventories, findings, skipped, files = collect(paths, policy, python)
    assessments: list[Assessment] = []
    for inventory in inventories:
        found, assessed = assess(inventory, store)
        findings.extend(found)
        assessments.extend(assessed)
    findings = apply_policy(findings, policy, source=policy_source)
    findings.sort(key=_sort_key)
    packages = sum(len(i.dependencies) for i in inventories)
    notes = [f"audited {packages} dependencies from {len(inventories)} manifests or "
             "environments"]
    if store is not None:
        notes.extend(db_notes(store.info))
    roots = tuple(paths) + ((str(python),) if python is not None else ())
    report = Report(
        tool_version=__version__, started=started, roots=roots, fail_on=policy.fail_on,
        findings=tuple(findings), skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        stats=ScanStats(files=files, bytes=0, analyzed=len(inventories),
                        seconds=round(time.perf_counter() - clock, 3)),
        notes=tuple(notes))
    return AuditResult(report, tuple(assessments), tuple(inventories))


def only_new(report: Report, baseline: Path) -> Report:
    """Keep only findings whose fingerprint is not in a previous JSON report."""
    try:
        data = json.loads(baseline.read_text(encoding="utf-8"))
        known = {f["fingerprint"] for f in data["findings"] if isinstance(f, dict)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--baseline {baseline}: not a Bastion JSON report ({exc})",
                         hint="write one with `bastion audit --format json -o FILE`") from None
    new = tuple(f for f in report.findings if f.fingerprint not in known)
    note = f"baseline {baseline}: {len(new)} new of {len(report.findings)} findings"
    return report.replace(findings=new, notes=(*report.notes, note))
