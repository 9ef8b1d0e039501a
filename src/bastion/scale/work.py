"""The worker side of a bulk scan: what one worker process (local or Ray) does with a batch.

Two kinds of job, both by path (workers read the files themselves: a Ray cluster needs the
files on a filesystem every node sees):

* :class:`Probe` hashes a file (SHA-256, bounded by the size it had when stat'ed) and says
  which analyzers claim it, so the driver can look its result up in the cache;
* :class:`Analyze` runs :func:`bastion.engine.scan_file` on it, exactly as a serial scan does,
  and says whether the result may be cached and how (:func:`_cacheability`).

A result goes into the cache only when it depends on nothing but the key's parts
(:mod:`bastion.scale.keys`). It does not when an analyzer looked outside the file
(:data:`OUTSIDE_INPUTS`: the advisory database and included files of a manifest, the folder
of a signature, the links beside an ONNX model, an installed package's folder), when an
analyzer failed or the file could not be read (worth retrying), when a plug-in analyzer did
not declare itself ``cache_safe``, or when a finding names the file's path in its text. When
an analyzer read the file's *name* during analysis (a compressed ``x.pkl.gz`` names its
content ``x.pkl``), the result is stored under that name and serves only files of that name.

Nothing here imports SQLAlchemy: the driver alone talks to the cache.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.analyzer import HEAD_SIZE, Analyzer, Context, Registry, Target
from bastion.engine import FileOutcome, scan_file
from bastion.findings import (
    Category,
    Finding,
    Location,
    Reference,
    Severity,
    Suppression,
    visible,
)
from bastion.policy import Policy
from bastion.rules import ANALYZER_ERROR, UNREADABLE
from bastion.scale import keys
from bastion.walk import FileEntry

#: Analyzers whose result depends on more than the bytes, and when: "always", or "top" (only
#: for a file on disk; as an archive member they read nothing else).
OUTSIDE_INPUTS: Mapping[str, tuple[str, str]] = {
    "supply-manifest": ("always", "the advisory database and included files"),
    "model-signature": ("top", "the files of the signed folder"),
    "onnx": ("top", "the links beside the model (external data)"),
}
#: Bastion's own analyzers whose results are a function of the bytes (and the key's parts).
#: A plug-in opts in with a ``cache_safe = True`` attribute.
CONTENT_ONLY = frozenset({
    "torch-zip", "torch-legacy", "torch-tar", "keras", "numpy", "safetensors", "gguf",
    "savedmodel", "onnx", "pickle", "archive", "supply-heuristics", "model-signature",
})
#: Findings that say the analysis did not complete: such a result is worth retrying.
_INCOMPLETE = frozenset({ANALYZER_ERROR.id, UNREADABLE.id})
#: Read size while hashing.
_CHUNK = 1 << 20
#: A file modified less than this long before it was hashed is not put in the stat index.
#: File times tick coarsely (a jiffy on Linux, up to seconds on network filesystems): a
#: same-size rewrite within the tick of the previous write keeps size, mtime and ctime, so
#: its stat could not tell the new bytes from the hashed ones (git's "racy clean" problem).
RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Probe:
    """Hash a file (when ``hash``) and name the analyzers that claim it."""

    index: int
    path: str  # to open (absolute)
    display: str
    size: int
    hash: bool = True


@dataclass(frozen=True, slots=True)
class Probed:
    index: int
    #: SHA-256 of the content, or None when not asked for or the file changed while read.
    digest: str | None
    #: Names of the claiming analyzers; None when the file could not be read.
    claimants: tuple[str, ...] | None
    #: Stat signature the digest belongs to (None: the file changed while it was hashed).
    stat: str | None
    #: False when the file was modified too recently for its stat to vouch for its content
    #: next time (:data:`RACY_NS`): the digest holds, but the stat index must not keep it.
    indexable: bool = True


@dataclass(frozen=True, slots=True)
class Analyze:
    """Analyse a file; with ``store``, also say how its result may be cached."""

    index: int
    path: str
    display: str
    size: int
    store: bool = False


@dataclass(frozen=True, slots=True)
class Analyzed:
    index: int
    outcome: FileOutcome
    #: Names of the analyzers that claimed the file on disk.
    claimants: tuple[str, ...] = ()
    #: The result in cacheable form (:func:`encode`), or None when it must not be cached.
    payload: str | None = None
    #: "" when the result holds for any file name, else the file name it was made for.
    name: str = ""
    #: Stat signature after the analysis: the driver caches only if it is the hashed one.
    stat: str | None = None


Job = Probe | Analyze
JobResult = Probed | Analyzed


@dataclass(frozen=True, slots=True)
class BatchResult:
    #: The worker's :func:`bastion.scale.keys.release`: a cluster whose workers run another
    #: Bastion than the driver would fill the cache with the wrong results.
    version: str
    results: tuple[JobResult, ...]


@dataclass
class WorkerState:
    """What every job of one scan needs: the policy and the analyzers."""

    policy: Policy
    registry: _Recording


# -- watching what an analysis depends on ------------------------------------------------------


@dataclass
class _Watch:
    """What one file's analysis touched: the analyzers that ran, and the file's name."""

    top: Target | None = None
    name_read: bool = False
    armed: bool = False
    ran: list[tuple[Analyzer, bool]] = field(default_factory=list)  # (analyzer, on disk?)

    def make_target(self, entry: FileEntry) -> Target:
        with entry.path.open("rb") as handle:
            head = handle.read(HEAD_SIZE)
        path = entry.path
        target = _WatchedTarget(Location(path=entry.display), entry.size, head,
                                lambda: path.open("rb"), watch=self)
        self.top = target
        return target


@dataclass(frozen=True)
class _WatchedTarget(Target):
    """The file on disk, noting when an analyzer reads its name (claims may; analyses that
    do make the result depend on the name)."""

    watch: _Watch | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        if self.watch is not None and self.watch.armed:
            self.watch.name_read = True
        return super().name


class _Recording(Registry):
    """The registry, noting every analyzer dispatched for the file being analysed."""

    watch: _Watch | None = None

    def claimants(self, target: Target) -> list[Analyzer]:
        watch = self.watch
        chosen = super().claimants(target)
        if watch is not None:
            on_disk = target is watch.top
            watch.ran.extend((a, on_disk) for a in chosen)
            if on_disk:
                watch.armed = True  # claims are done: a name read from now on is the analysis'
        return chosen


def make_state(policy: Policy, registry: Registry) -> WorkerState:
    return WorkerState(policy, _Recording(list(registry)))


# -- running a batch ---------------------------------------------------------------------------


def run_batch(state: WorkerState, jobs: Sequence[Job]) -> BatchResult:
    results: list[JobResult] = []
    for job in jobs:
        if isinstance(job, Probe):
            results.append(_probe(state, job))
        else:
            results.append(_analyze(state, job))
    return BatchResult(keys.release(), tuple(results))


def _stat(path: str) -> str | None:
    try:
        return keys.stat_signature(os.stat(path))
    except OSError:
        return None


def _probe(state: WorkerState, job: Probe) -> Probed:
    try:
        now = time.time_ns()
        before = os.stat(job.path)
        with open(job.path, "rb") as handle:
            head = handle.read(HEAD_SIZE)
            digest = _sha256(handle, head, before.st_size) if job.hash else None
    except OSError:
        return Probed(job.index, None, None, None)
    signature = keys.stat_signature(before)
    stable = _stat(job.path) == signature
    path = job.path
    target = Target(Location(path=job.display), before.st_size, head,
                    lambda: open(path, "rb"))  # noqa: SIM115 (the analyzer closes it)
    claimants = tuple(a.name for a in Registry.claimants(state.registry, target))
    racy = max(before.st_mtime_ns, before.st_ctime_ns) > now - RACY_NS
    return Probed(job.index, digest if stable else None, claimants,
                  signature if stable else None, indexable=not racy)


def _sha256(handle: Any, head: bytes, size: int) -> str | None:
    """SHA-256 of the first ``size`` bytes; None when the file is not that long any more."""
    import hashlib

    digest = hashlib.sha256(head[:size])
    left = size - min(len(head), size)
    view = memoryview(bytearray(min(left, _CHUNK)))
    while left > 0:
        n = handle.readinto(view[:min(left, _CHUNK)])
        if not n:
            return None
        digest.update(view[:n])
        left -= n
    return digest.hexdigest()


def _analyze(state: WorkerState, job: Analyze) -> Analyzed:
    watch = _Watch()
    ctx = Context(policy=state.policy, registry=state.registry)  # notes of this file alone
    state.registry.watch = watch
    try:
        findings, skipped = scan_file(FileEntry(Path(job.path), job.display, job.size), ctx,
                                      make_target=watch.make_target)
    finally:
        state.registry.watch = None
    outcome = FileOutcome(tuple(findings), skipped, tuple(ctx.notes))
    claimants = tuple(a.name for a, on_disk in watch.ran if on_disk)
    if not job.store or skipped is not None or watch.top is None:
        return Analyzed(job.index, outcome, claimants)
    payload = None
    if _cacheability(watch, findings, job.display) is None:
        payload = encode(findings, ctx.notes, job.display)
    name = file_name(job.display) if watch.name_read else ""
    return Analyzed(job.index, outcome, claimants, payload, name, _stat(job.path))


def _cacheability(watch: _Watch, findings: Sequence[Finding], display: str) -> str | None:
    """Why this result must not be cached, or None when it may."""
    for analyzer, on_disk in watch.ran:
        outside = OUTSIDE_INPUTS.get(analyzer.name)
        if outside is not None and (outside[0] == "always" or on_disk):
            return f"{analyzer.name} reads {outside[1]}"
        if analyzer.name == "supply-heuristics" and on_disk and file_name(display) == "RECORD":
            return "an installed package's RECORD: the package folder is read"
        if analyzer.name not in CONTENT_ONLY and not getattr(analyzer, "cache_safe", False):
            return f"plug-in analyzer {analyzer.name} is not declared cache_safe"
    if any(f.rule_id in _INCOMPLETE for f in findings):
        return "the analysis did not complete"
    return None


def file_name(display: str) -> str:
    """The file name a name-dependent result is stored under (as its findings show it)."""
    return visible(display).replace("\\", "/").rsplit("/", 1)[-1]


# -- the cached form of a result ----------------------------------------------------------------


def encode(findings: Sequence[Finding], notes: Sequence[str], display: str) -> str | None:
    """The result with the file's path taken out, as JSON; None when it cannot be (a finding
    about another file, or the path written inside a finding's text)."""
    path = visible(display)
    items = []
    for f in findings:
        if f.location.path != path:
            return None
        loc = f.location
        item = {
            "rule_id": f.rule_id, "severity": f.severity.value, "category": f.category.value,
            "members": list(loc.members), "offset": loc.offset, "line": loc.line,
            "message": f.message, "evidence": f.evidence, "remediation": f.remediation,
            "references": [r.to_dict() for r in f.references],
            "suppression": f.suppression.to_dict() if f.suppression else None,
            "properties": dict(f.properties),
        }
        items.append(item)
    try:
        text = json.dumps({"findings": items, "notes": list(notes)}, ensure_ascii=False,
                          separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return None  # a property that is not JSON: not worth caching
    if path in text or json.dumps(path, ensure_ascii=False)[1:-1] in text:
        return None
    return text


def decode(payload: str, display: str) -> FileOutcome:
    """A cached result for the file at ``display`` (raises ValueError on a damaged payload)."""
    try:
        data = json.loads(payload)
        findings = tuple(
            Finding(
                rule_id=str(item["rule_id"]),
                severity=Severity(item["severity"]),
                category=Category(item["category"]),
                location=Location(display, tuple(item["members"]), item["offset"],
                                  item["line"]),
                message=str(item["message"]),
                evidence=item["evidence"],
                remediation=item["remediation"],
                references=tuple(Reference.from_dict(r) for r in item["references"]),
                suppression=Suppression.from_dict(item["suppression"])
                if item["suppression"] else None,
                properties=dict(item["properties"]),
            )
            for item in data["findings"]
        )
        notes = tuple(str(n) for n in data["notes"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"damaged cache entry: {type(exc).__name__}: {exc}") from None
    return FileOutcome(findings, None, notes, cached=True)


# -- process-wide state of a worker ------------------------------------------------------------

_STATES: dict[str, WorkerState] = {}


def init_worker(token: str, policy: Policy, registry: Registry | None,
                environ: Mapping[str, str] | None = None) -> None:
    """Set up a worker process for one scan (``registry`` None: the default analyzers).

    ``environ`` is the driver's environment: a forkserver's children inherit the server's,
    which may be older than the driver's (the advisory database path, for one).
    """
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    if token not in _STATES:
        _STATES.clear()  # one scan at a time per worker
        _STATES[token] = make_state(policy, registry if registry is not None
                                    else Registry.default())


def run_in_worker(token: str, jobs: Sequence[Job]) -> BatchResult:
    """Entry point of a local worker process (after :func:`init_worker`)."""
    return run_batch(_STATES[token], jobs)


def run_remote(token: str, policy: Policy, registry: Registry | None,
               jobs: Sequence[Job]) -> BatchResult:
    """Entry point of a Ray task: the state travels with each task, built once per worker."""
    init_worker(token, policy, registry)
    return run_batch(_STATES[token], jobs)


def portable(registry: Registry) -> Registry:
    """A copy of a registry fit to send to another process: lazy analyzers unloaded."""
    from bastion.analyzer import LazyAnalyzer

    return Registry(
        (LazyAnalyzer(a.spec, a.name, a.capability, a.prefilter)
         if isinstance(a, LazyAnalyzer) else a) for a in registry
    )


__all__ = ["Analyze", "Analyzed", "BatchResult", "Job", "JobResult", "Probe", "Probed",
           "WorkerState", "decode", "encode", "file_name", "init_worker", "make_state",
           "portable", "run_batch", "run_in_worker", "run_remote"]
