"""Model files under the SBOM's paths: which files, what format, and their SHA-256.

"A model file" is whatever the model scanner analyses: a file claimed by one of
:data:`bastion.scan.MODEL_ANALYZERS` (by content, never by extension). The claiming
analyzer names the format. Files only the generic archive analyzer claims (a zip, a
tarball) are listed as plain ``file`` components: they may hold a model or a wheel.
Hashing streams the file in fixed chunks (bounded memory); a file over the policy's
``max-file-size`` is listed without a hash and named as a problem, never read whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bastion.analyzer import HEAD_SIZE, Analyzer, Registry, Target
from bastion.findings import Finding, Location, Report, Severity
from bastion.policy import Policy
from bastion.sbom.values import ModelFile
from bastion.walk import FileEntry, walk

CHUNK = 1 << 20
ML_MODEL = "machine-learning-model"
FILE = "file"
#: Analyzers that claim containers rather than a model format.
_GENERIC = frozenset({"archive"})
#: Most rule ids listed on one model component.
MAX_RULES = 20


@dataclass(frozen=True)
class Found:
    """Model files and the problems met while looking for them."""

    models: tuple[ModelFile, ...]
    problems: tuple[str, ...]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in :data:`CHUNK`-sized pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def find_models(paths: Sequence[str], policy: Policy,
                analyzers: Iterable[Analyzer] | None = None) -> Found:
    """Every file a model analyzer claims under the paths, hashed, in walk (sorted) order."""
    if analyzers is None:
        from bastion.scan import MODEL_ANALYZERS

        analyzers = MODEL_ANALYZERS
    registry = Registry(analyzers)
    models: list[ModelFile] = []
    problems: list[str] = []
    for item in walk(paths, policy):
        if isinstance(item, Finding):
            problems.append(f"{item.location}: {item.message}")
        elif isinstance(item, FileEntry) and item.size > 0:
            model = _model(item, registry, policy)
            if isinstance(model, str):
                problems.append(model)
            elif model is not None:
                models.append(model)
                if model.problem:
                    problems.append(f"{model.path}: {model.problem}")
    return Found(tuple(models), tuple(problems))


def _model(entry: FileEntry, registry: Registry, policy: Policy) -> ModelFile | str | None:
    """The component for one file, None when no model analyzer claims it, or a problem."""
    try:
        with entry.path.open("rb") as handle:
            head = handle.read(HEAD_SIZE)
    except OSError as exc:
        return f"{entry.display}: cannot read: {exc.strerror or exc}"
    path = entry.path
    target = Target(Location(path=entry.display), entry.size, head, lambda: path.open("rb"))
    claimants = registry.claimants(target)
    if not claimants:
        return None
    name = claimants[0].name
    kind = FILE if name in _GENERIC else ML_MODEL
    fmt = _archive_kind(head) if name in _GENERIC else name
    model = ModelFile(ref=f"file:{entry.display}", path=entry.display, size=entry.size,
                      format=fmt, kind=kind, sha256=None)
    if entry.size > policy.limits.max_file_size:
        return replace(model, problem=f"not hashed: {entry.size} bytes is over the "
                       f"max-file-size limit of {policy.limits.max_file_size}")
    try:
        return replace(model, sha256=sha256_file(path))
    except OSError as exc:
        return replace(model, problem=f"not hashed: read failed: {exc.strerror or exc}")


def _archive_kind(head: bytes) -> str:
    from bastion.scan.archive import detect

    kind = detect(head)
    return f"archive/{kind}" if kind else "archive"


def with_verdicts(models: Iterable[ModelFile], report: Report) -> tuple[ModelFile, ...]:
    """Each model's scan verdict from a report that scanned it: pass, or fail at the
    report's threshold, with the worst severity and the rules that fired."""
    by_path: dict[str, list[Finding]] = {}
    for finding in report.active:
        by_path.setdefault(finding.location.path, []).append(finding)
    done = []
    for model in models:
        found = by_path.get(model.path, [])
        worst = max((f.severity for f in found), default=None)
        failing = worst is not None and worst >= report.fail_on
        rules = tuple(sorted({f.rule_id for f in found}))[:MAX_RULES]
        done.append(replace(model, verdict="fail" if failing else "pass", worst=worst,
                            findings=len(found), rules=rules))
    return tuple(done)


def worst_text(worst: Severity | None) -> str:
    return worst.value if worst is not None else "none"
