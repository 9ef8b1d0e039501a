"""``bastion sbom`` and ``--format cyclonedx``: from paths or a report to an :class:`Sbom`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.findings import Report
from bastion.policy import DEFAULT, Policy
from bastion.sbom.collect import assemble, root_name
from bastion.sbom.models import find_models, with_verdicts
from bastion.sbom.values import ModelFile, Sbom
from bastion.supply.advisories.store import AdvisoryStore


@dataclass(frozen=True)
class Generated:
    """An SBOM and the report of the audit and scan that made it (for the summary)."""

    sbom: Sbom
    report: Report


def generate(paths: Sequence[str], store: AdvisoryStore | None, policy: Policy = DEFAULT, *,
             python: Path | None = None, scan: bool = True, policy_source: str = "") -> Generated:
    """``bastion sbom``: audit, find and hash models, scan them; never prints."""
    from bastion.analyzer import Registry
    from bastion.engine import scan_paths
    from bastion.scan import MODEL_ANALYZERS
    from bastion.supply.audit import audit

    found = find_models(_model_roots(paths), policy)
    result = audit(_manifest_roots(paths, found.models), store, policy, python=python,
                   policy_source=policy_source)
    report = result.report
    models = found.models
    if scan and models:
        scanned = scan_paths([m.path for m in models], policy, registry=Registry(MODEL_ANALYZERS),
                             policy_source=policy_source)
        models = with_verdicts(models, scanned)
        report = report.replace(findings=(*report.findings, *scanned.findings),
                                     skipped=(*report.skipped, *scanned.skipped))
    sbom = assemble(report, result.inventories, models, root=root_name(paths or [str(python)]),
                    problems=found.problems)
    return Generated(sbom, report)


def from_report(report: Report) -> Sbom:
    """The SBOM of a scan or audit report, its inventory read again from its roots."""
    from bastion.supply.audit import collect

    paths, python = _split_roots(report.roots)
    found = find_models(_model_roots(paths), DEFAULT)
    inventories, _findings, _skipped, _files = collect(_manifest_roots(paths, found.models),
                                                       DEFAULT, python)
    models = with_verdicts(found.models, report) if _scanned_files(report) else found.models
    return assemble(report, inventories, models, root=root_name(report.roots),
                    problems=found.problems)


def _model_roots(paths: Sequence[str]) -> list[str]:
    """The paths to look for model files in: not installed environments (read from their
    metadata; files inside installed packages are package data, and a virtual environment
    holds thousands of files)."""
    from bastion.supply.inventory import is_site_packages

    def environment(path: Path) -> bool:
        return path.is_dir() and (is_site_packages(path) or (path / "pyvenv.cfg").is_file()
                                  or (path / "conda-meta").is_dir())

    return [p for p in paths if not environment(Path(p))]


def _manifest_roots(paths: Sequence[str], models: Sequence[ModelFile]) -> list[str]:
    """The paths to audit: a model file named on the command line is not a requirements
    file (the audit reads any explicitly named file as one)."""
    named = {m.path for m in models}
    return [p for p in paths if p.replace(os.sep, "/") not in named]


def _split_roots(roots: Sequence[str]) -> tuple[list[str], Path | None]:
    """``bastion audit --python X`` adds the interpreter to the report's roots: take it out
    (read as a requirements file it would be nonsense)."""
    from bastion.supply.inventory import reader_for

    paths, python = [], None
    for root in roots:
        path = Path(root)
        if path.is_file() and reader_for(path.name) is None and path.name.startswith("python"):
            python = path
        else:
            paths.append(root)
    return paths, python


def _scanned_files(report: Report) -> bool:
    """Whether the report comes from a scan that read file contents (``bastion scan``) rather
    than an audit (which reads manifests only and counts no bytes)."""
    return report.stats.bytes > 0


__all__ = ["Generated", "Sbom", "from_report", "generate"]
