"""The driver of a bulk scan: plan the per-file work, hand it out in batches, gather it back.

:func:`make_runner` returns a :data:`bastion.engine.FileRunner`: the engine walks, this does
the per-file pass, the engine applies the policy and sorts, so the report is the serial
one's whatever ran where. Per file:

1. files the engine would not analyse (too large, empty) are settled here, as it would;
2. with a cache, the stat index gives the digest of files unchanged since they were last
   hashed; the others are *probed* (hashed, claimants named) on the workers; every digest is
   then looked up, and a hit is the file's outcome, its path put back in;
3. the rest is *analysed* on the workers; each batch's results are written to the cache and
   committed as soon as it returns, so a scan killed half-way keeps what it finished.

Batches: small files travel together (at most :data:`BATCH_FILES` files or
:data:`BATCH_BYTES` bytes), large ones alone, largest first; analysis batches go out before
probes, so files finish (and are committed) early. A batch whose worker died is retried file
by file, each alone; a file that kills its worker alone becomes a ``SCAN-ANALYZER-ERROR``
finding.

Backends: in this process (``--jobs 1`` with a cache), local worker processes
(``--jobs N``; :class:`LocalBackend`), Ray tasks (``--ray``; :mod:`bastion.scale.ray`).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bastion.analyzer import Context, Registry
from bastion.engine import NOT_CLAIMED, FileOutcome, Progress, precheck
from bastion.errors import UsageError
from bastion.findings import Location, Skipped
from bastion.policy import Policy
from bastion.rules import ANALYZER_ERROR
from bastion.scale import keys
from bastion.scale.work import (
    Analyze,
    Analyzed,
    BatchResult,
    Job,
    Probe,
    Probed,
    decode,
    file_name,
    make_state,
    run_batch,
)
from bastion.walk import FileEntry

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

    from bastion.scale.cache import ResultCache, ResultRow, StatRow

#: Most files in one batch: enough that a batch's round trip costs little next to its work.
BATCH_FILES = 64
#: Most bytes in one batch (a file larger than this travels alone).
BATCH_BYTES = 64 << 20


class Backend(Protocol):
    """Where batches run. ``wait`` blocks until at least one submitted batch is done and
    returns (handle, result or the exception that stopped it) for each finished one."""

    @property
    def slots(self) -> int: ...
    @property
    def workers(self) -> int: ...
    def submit(self, jobs: Sequence[Job]) -> object: ...
    def wait(self) -> list[tuple[object, BatchResult | BaseException]]: ...
    def close(self) -> None: ...


class InlineBackend:
    """Runs each batch at once in this process (a cached scan without ``--jobs``)."""

    slots = 1
    workers = 1

    def __init__(self, policy: Policy, registry: Registry) -> None:
        self._state = make_state(policy, registry)
        self._done: list[tuple[object, BatchResult | BaseException]] = []

    def submit(self, jobs: Sequence[Job]) -> object:
        handle = object()
        try:
            self._done.append((handle, run_batch(self._state, jobs)))
        except Exception as exc:  # a bug in one batch: retried file by file, then reported
            self._done.append((handle, exc))
        return handle

    def wait(self) -> list[tuple[object, BatchResult | BaseException]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        self._done.clear()


def start_method() -> str:
    """``forkserver`` where there is one (POSIX), else ``spawn``; never plain ``fork``.

    The driver has threads (the progress bar's refresher, database connection pools): a
    forked child inherits their locks in whatever state they were, which can deadlock it. A
    fork server is a clean single-threaded process, started once, that has already imported
    the scanner; workers fork from it in milliseconds, where ``spawn`` would import Bastion
    afresh in each (~0.3 s).
    """
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class LocalBackend:
    """``--jobs N``: a pool of N worker processes on this machine."""

    def __init__(self, jobs: int, policy: Policy, registry: Registry, default: bool) -> None:
        import uuid

        self.workers = jobs
        self.slots = jobs * 2  # one batch running, one waiting, per worker
        self._args = (uuid.uuid4().hex, policy, None if default else _portable(registry),
                      dict(os.environ))
        self._pool: ProcessPoolExecutor | None = None  # started on the first batch
        self._futures: set[Future[BatchResult]] = set()

    def _start(self) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from bastion.scale.work import init_worker

        method = start_method()
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(["bastion.scale.work"])
        self._pool = ProcessPoolExecutor(self.workers, mp_context=context,
                                         initializer=init_worker, initargs=self._args)

    def submit(self, jobs: Sequence[Job]) -> object:
        from bastion.scale.work import run_in_worker

        if self._pool is None:
            self._start()
        assert self._pool is not None
        future = self._pool.submit(run_in_worker, self._args[0], list(jobs))
        self._futures.add(future)
        return future

    def wait(self) -> list[tuple[object, BatchResult | BaseException]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        done, _ = wait_futures(self._futures, return_when=FIRST_COMPLETED)
        out: list[tuple[object, BatchResult | BaseException]] = []
        broken = False
        for future in done:
            self._futures.discard(future)
            exc = future.exception()
            out.append((future, exc if exc is not None else future.result()))
            broken = broken or isinstance(exc, BrokenProcessPool)
        if broken:  # a worker died (killed, out of memory): every batch in flight is lost
            for future in self._futures:
                out.append((future, BrokenProcessPool("a worker process died")))
            self._futures.clear()
            self.close()  # the next batch starts a fresh pool
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _portable(registry: Registry) -> Registry:
    import pickle

    from bastion.scale.work import portable

    copy = portable(registry)
    try:
        pickle.dumps(copy)
    except Exception as exc:
        raise UsageError(f"these analyzers cannot be sent to worker processes: {exc}") from None
    return copy


# -- the pipeline --------------------------------------------------------------------------------


@dataclass
class _File:
    entry: FileEntry
    path: str  # absolute, for workers
    digest: str | None = None
    stat: str | None = None  # the stat signature the digest belongs to
    claimants: tuple[str, ...] | None = None
    key: str | None = None


@dataclass
class _Writes:
    stats: list[StatRow] = field(default_factory=list)
    results: list[ResultRow] = field(default_factory=list)


class Pipeline:
    """One run of the per-file pass over a backend, with or without a cache."""

    def __init__(self, entries: Sequence[FileEntry], ctx: Context, progress: Progress | None,
                 backend: Backend, cache: ResultCache | None) -> None:
        self.entries = entries
        self.ctx = ctx
        self.progress = progress
        self.backend = backend
        self.cache = cache
        self.outcomes: list[FileOutcome | None] = [None] * len(entries)
        self.files = [_File(e, os.path.abspath(e.path)) for e in entries]
        self.done = 0
        self.probe_q: deque[Probe] = deque()
        self.analyze_q: deque[Analyze] = deque()
        self.retry_q: deque[Job] = deque()
        self.inflight: dict[object, tuple[list[Job], bool]] = {}  # batch, run alone?
        self.batch_files = max(1, min(BATCH_FILES,
                                      math.ceil(len(entries) / (backend.workers * 4))))
        self.scanner = keys.SCANNER_VERSION
        self.policy = keys.policy_digest(ctx.policy)
        self.registry = keys.registry_digest(ctx.registry, self.scanner)

    # -- bookkeeping

    def finish(self, index: int, outcome: FileOutcome) -> None:
        if self.outcomes[index] is not None:
            return
        self.outcomes[index] = outcome
        self.done += 1
        if self.progress is not None:
            self.progress(self.entries[index].display, self.done, len(self.entries))

    def note(self, text: str) -> None:
        self.ctx.note(text)

    # -- planning

    def run(self) -> list[FileOutcome]:
        todo: list[int] = []
        for i, entry in enumerate(self.entries):
            early = precheck(entry, self.ctx.policy)
            if early is not None:
                self.finish(i, FileOutcome(tuple(early[0]), early[1]))
            else:
                todo.append(i)
        todo.sort(key=lambda i: -self.entries[i].size)  # largest first: better balance
        if self.cache is None:
            self.analyze_q.extend(self._analyze_job(i) for i in todo)
        else:
            self._plan_cached(todo)
        try:
            self._loop()
        finally:
            self.backend.close()
        missing = [i for i, o in enumerate(self.outcomes) if o is None]
        if missing:  # a bug, not a hostile file: say so rather than drop files silently
            raise RuntimeError(f"{len(missing)} files were not scanned")
        return [o for o in self.outcomes if o is not None]

    def _analyze_job(self, i: int) -> Analyze:
        f = self.files[i]
        return Analyze(i, f.path, f.entry.display, f.entry.size, store=self.cache is not None)

    def _plan_cached(self, todo: list[int]) -> None:
        assert self.cache is not None
        current: dict[int, str | None] = {}
        for i in todo:
            try:
                current[i] = keys.stat_signature(os.stat(self.files[i].path))
            except OSError:
                current[i] = None
        index = self._guard(lambda c: c.stat_lookup([self.files[i].path for i in todo]), {})
        known: list[int] = []
        for i in todo:
            f = self.files[i]
            row = index.get(f.path)
            if current[i] is None:  # vanished or unreadable: the analysis says so
                self.analyze_q.append(Analyze(i, f.path, f.entry.display, f.entry.size))
            elif row is not None and row.stat == current[i]:
                f.digest, f.stat = row.digest, row.stat
                if row.registry == self.registry:
                    f.claimants = row.claimants
                    known.append(i)
                else:  # other analyzers since: only the claims are needed, not the hash
                    self.probe_q.append(Probe(i, f.path, f.entry.display, f.entry.size, False))
            else:
                self.probe_q.append(Probe(i, f.path, f.entry.display, f.entry.size))
        self._lookup(known)

    # -- cache access: a failure is a note, never a lost result

    def _guard(self, action: Callable[[ResultCache], Any], fallback: Any) -> Any:
        from bastion.db import StorageError

        if self.cache is None:
            return fallback
        try:
            return action(self.cache)
        except StorageError as exc:
            self.note(f"result cache disabled for the rest of this scan: {exc}")
            self.cache = None
            return fallback

    def _lookup(self, indices: Iterable[int]) -> None:
        """Settle the files whose result is cached; queue the others for analysis."""
        wanted: dict[str, list[int]] = {}
        for i in indices:
            f = self.files[i]
            assert f.digest is not None
            assert f.claimants is not None
            if not f.claimants:
                self.finish(i, FileOutcome((), Skipped(path=f.entry.display, reason=NOT_CLAIMED)))
                continue
            f.key = keys.result_key(f.digest, self.scanner, self.policy, self.registry,
                                    f.claimants)
            wanted.setdefault(f.key, []).append(i)
        found: dict[tuple[str, str], str] = self._guard(lambda c: c.result_lookup(list(wanted)),
                                                        {})
        for key, group in wanted.items():
            for i in group:
                f = self.files[i]
                name = file_name(f.entry.display)
                payload = found.get((key, "")) or found.get((key, name))
                if payload is not None:
                    try:
                        self.finish(i, decode(payload, f.entry.display))
                        continue
                    except ValueError:
                        pass  # damaged entry: analyse again (and overwrite it)
                self.analyze_q.append(self._analyze_job(i))

    # -- the loop

    def _next_batch(self) -> list[Job] | None:
        queue: deque[Any]
        if len(self.analyze_q) >= self.batch_files or (self.analyze_q and not self.probe_q):
            queue = self.analyze_q
        elif self.probe_q:
            queue = self.probe_q
        else:
            return None
        batch: list[Job] = []
        size = 0
        while queue and len(batch) < self.batch_files and (not batch or size < BATCH_BYTES):
            job = queue[0]
            if batch and size + job.size > BATCH_BYTES:
                break
            batch.append(queue.popleft())
            size += job.size
        return batch

    def _loop(self) -> None:
        while True:
            if self.retry_q:
                # A job of a failed batch runs again alone, with nothing else in flight: a
                # dying worker takes every batch in flight with it, so only a job that fails
                # alone is the one that kills workers.
                if not self.inflight:
                    job = self.retry_q.popleft()
                    self.inflight[self.backend.submit([job])] = ([job], True)
            else:
                while len(self.inflight) < self.backend.slots:
                    batch = self._next_batch()
                    if batch is None:
                        break
                    self.inflight[self.backend.submit(batch)] = (batch, False)
            if not self.inflight:
                return
            for handle, result in self.backend.wait():
                jobs, alone = self.inflight.pop(handle)
                if isinstance(result, BaseException):
                    self._failed(jobs, alone, result)
                else:
                    self._gather(result)

    def _failed(self, jobs: list[Job], alone: bool, exc: BaseException) -> None:
        if isinstance(exc, UsageError):
            raise exc
        if not alone:
            self.retry_q.extend(jobs)
            return
        for job in jobs:
            f = self.files[job.index]
            if isinstance(job, Probe):  # hashing keeps failing: analyse without the cache
                self.analyze_q.append(Analyze(job.index, f.path, f.entry.display, f.entry.size))
            else:
                self.finish(job.index, FileOutcome((ANALYZER_ERROR.finding(
                    Location(path=f.entry.display),
                    f"the worker analysing this file failed: {type(exc).__name__}: {exc}",
                    properties={"analyzer": "worker"}),)))

    def _gather(self, result: BatchResult) -> None:
        if result.version != keys.release():
            raise UsageError(
                f"a worker runs another Bastion ({result.version}) than this process "
                f"({keys.release()})",
                hint="install the same Bastion on every node of the cluster")
        writes = _Writes()
        probed: list[int] = []
        for item in result.results:
            if isinstance(item, Probed):
                self._probed(item, writes, probed)
            else:
                self._analyzed(item, writes)
        if probed:
            self._lookup(probed)
        if writes.stats or writes.results:
            self._guard(lambda c: c.write(writes.stats, writes.results), None)

    def _probed(self, item: Probed, writes: _Writes, probed: list[int]) -> None:
        from bastion.scale.cache import StatRow

        f = self.files[item.index]
        if item.claimants is None or item.stat is None or (f.digest is None and
                                                           item.digest is None):
            # unreadable, or changed while read: analyse it, cache nothing
            self.analyze_q.append(Analyze(item.index, f.path, f.entry.display, f.entry.size))
            return
        if item.digest is not None:
            f.digest = item.digest
        elif item.stat != f.stat:  # claims only, and the file changed since it was hashed
            self.analyze_q.append(Analyze(item.index, f.path, f.entry.display, f.entry.size))
            return
        f.stat, f.claimants = item.stat, item.claimants
        assert f.digest is not None
        # Downloads live in a temporary folder; a file modified just now may change again
        # within the same timestamp tick: neither goes into the stat index.
        if item.indexable and "://" not in f.entry.display:
            writes.stats.append(StatRow(f.path, f.stat, f.digest, self.registry, f.claimants))
        probed.append(item.index)

    def _analyzed(self, item: Analyzed, writes: _Writes) -> None:
        from bastion.scale.cache import ResultRow

        f = self.files[item.index]
        self.finish(item.index, item.outcome)
        if (item.payload is None or f.digest is None or item.stat is None
                or item.stat != f.stat):
            return  # not cacheable, or the file changed since it was hashed
        key = keys.result_key(f.digest, self.scanner, self.policy, self.registry,
                              item.claimants)
        writes.results.append(ResultRow(key, item.name, self.scanner, item.payload,
                                        len(item.outcome.findings)))


def make_runner(
    *,
    jobs: int = 1,
    cache: ResultCache | None = None,
    ray_address: str | None = None,
    default_registry: bool = False,
) -> Callable[[Sequence[FileEntry], Context, Progress | None], Sequence[FileOutcome]]:
    """A per-file pass for :func:`bastion.engine.scan_paths`: ``jobs`` worker processes
    (1: this process), or Ray tasks at ``ray_address`` (``"default"``: ``ray.init()``'s own
    choice), with or without a result cache. ``default_registry``: the scan uses
    ``Registry.default()``, which workers build for themselves rather than receive."""

    def run(entries: Sequence[FileEntry], ctx: Context,
            progress: Progress | None) -> Sequence[FileOutcome]:
        backend: Backend
        if ray_address is not None:
            from bastion.scale.ray import RayBackend

            backend = RayBackend(ray_address, jobs, ctx.policy, ctx.registry, default_registry)
        elif jobs > 1:
            backend = LocalBackend(jobs, ctx.policy, ctx.registry, default_registry)
        else:
            backend = InlineBackend(ctx.policy, ctx.registry)
        return Pipeline(entries, ctx, progress, backend, cache).run()

    return run
