"""Hashing a model's files: every core busy, one pass over the bytes, bounded memory.

The work is cut into units (a whole file, or one shard of it), largest first so the last
unit to finish is a small one, and handed to a pool of threads: ``hashlib`` and ``blake3``
release the GIL while they hash and the kernel while it reads, so threads scale like
processes without copying data between them. Each thread reads into its own reusable,
page-aligned buffers (:class:`Buffers`: :data:`CHUNK` bytes, and :data:`BLAKE3_READ` for a
large BLAKE3 file; see :func:`bastion.files.aligned_buffer`), so memory is bounded by the
thread count whatever the model's size. The command line hashes in forked worker processes
instead (:class:`ForkedPending`), where that is safe: the same loop, without sharing a GIL with
the Python its main thread runs meanwhile.

SHA-256 cannot hash one stream in parallel, so a large file in the ``files`` method is one
unit; the ``shards`` method (the default) cuts it into shards that hash side by side. BLAKE3
is parallel inside one stream, so its ``files`` method spreads a large file over every core
by itself, reading it in :data:`BLAKE3_READ` pieces. Not memory-mapped, as model-signing
does: a mapped file truncated while it is hashed kills the process with ``SIGBUS`` (measured
with ``blake3``'s ``update_mmap``: exit 135, no message), where a read comes up short and
says so.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence

from bastion.cpus import usable_cpus
from bastion.files import aligned_buffer, write_all
from bastion.records import NamedTuple
from bastion.sign.manifest import FILES, SHARDS, LocalFile, Resource, Serialization

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from types import ModuleType
    from typing import Protocol

    class _Hasher(Protocol):
        def update(self, data: bytes | memoryview, /) -> object: ...
        def digest(self) -> bytes: ...

    class _Stop(Protocol):
        def is_set(self) -> bool: ...

#: Bytes read per call: large enough that each read and hash call amortises its overhead
#: (and the GIL, taken once per call, is asked for seldom: see :func:`favour_hashing`), small
#: enough to stay in cache. Measured on 2 vCPUs, 4 GB warm, page-aligned buffers: 256 KiB
#: 1.35 s, 512 KiB 1.30 s, 1 MiB 1.27 s, 2 MiB 1.26-1.27 s, 4 MiB 1.27-1.31 s; and as
#: whole ``bastion verify`` processes, 2 MiB 0.958 of the limit against 0.948 for 1 MiB.
CHUNK = 2 << 20
#: Below this size a BLAKE3 file is hashed on one thread: starting the pool costs more.
BLAKE3_PARALLEL_MIN = 8 << 20
#: Bytes read per call for a BLAKE3 file hashed on BLAKE3's own threads. Measured on 2 vCPUs,
#: 2.5 GB warm: 1 MiB 3.3-3.6 GB/s, 2 MiB 4.4-4.7, 4 MiB 5.1-5.7, 8 MiB 4.8-6.0, 16 MiB 4.2
#: (memory-mapped: 7.3-7.8 GB/s, but see above).
BLAKE3_READ = 4 << 20
#: How far ahead of its reads a unit whose bytes are not in the page cache asks the kernel to
#: read (``POSIX_FADV_WILLNEED``): the kernel's own sequential readahead keeps a virtual
#: disk's queue too short. Measured on 2 vCPUs, 4 GB in 1 GB units, cold cache, 2 threads:
#: 3.14 s with the kernel's readahead alone, 2.54 s reading 32 MB ahead, 2.59 s 128 MB ahead
#: (medians of 14 rounds; single runs spread from 1.9 to 3.7 s). Asked only once a read found
#: the page cache empty (``RWF_NOWAIT``): on a warm cache the advice alone cost 0.7% (64 MB)
#: to 1.8% (16 MB) of the hashing time (12 rounds).
PREFETCH = 32 << 20
#: ``preadv`` that fails rather than waits for the disk (Linux); 0 where there is none.
_NOWAIT = getattr(os, "RWF_NOWAIT", 0) if hasattr(os, "posix_fadvise") else 0
#: The most units one model may be cut into (shards of 1 MB over a 1 TB model: a million).
MAX_UNITS = 4_000_000


class HashingError(OSError):
    """A file could not be read to the end (vanished, changed size, I/O error)."""

    def __init__(self, rel: str, reason: str) -> None:
        super().__init__(f"{rel}: {reason}")
        self.rel = rel
        self.reason = reason


#: The GIL switch interval of a process whose job is hashing (see :func:`favour_hashing`).
HASHING_SWITCH_INTERVAL = 0.0001


def favour_hashing() -> None:
    """Let the hashing threads of a process that exists to hash (``bastion sign``/``verify``
    on the command line) take the GIL back at once.

    Each thread needs the GIL for a moment between two reads of :data:`CHUNK` bytes. While
    the main thread runs Python (loading keys and the report code: 40-50 ms), a thread that
    asks for it waits up to the switch interval, 5 ms by default, with its core idle.
    Measured on 2 vCPUs, 80 ms of Python on the main thread during a 4 GB hash added 75 ms
    to the wall time at 5 ms and 50-60 ms at 0.05-0.1 ms (the ideal is 40 ms: its share of
    two cores). A process-wide setting, so only the command line calls it, never a library
    function that a long-running process (the gateway) might call.
    """
    sys.setswitchinterval(HASHING_SWITCH_INTERVAL)


def default_workers() -> int:
    """One thread per CPU this process may run on (a container's quota can be fewer than
    the host's). Measured on 2 CPUs, 4 GB: twice as many threads cost ~10% more CPU with a
    warm page cache (3.46 against 3.09 CPU-seconds) and did not reliably help a cold one."""
    return usable_cpus()


def blake3_available() -> bool:
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


def _factory(hash_type: str) -> Callable[[], _Hasher]:
    if hash_type == "sha256":
        return hashlib.sha256
    if hash_type == "blake2b":
        return hashlib.blake2b
    if hash_type == "blake3":
        try:
            from blake3 import blake3
        except ImportError:
            raise HashingError(".", "the BLAKE3 hash needs the 'blake3' package "
                                    "(pip install 'bastion-mlsec[sign]')") from None
        return blake3
    raise HashingError(".", f"unknown hash type {hash_type!r}")


class Unit(NamedTuple):
    """One piece of hashing work: bytes ``[start, end)`` of a file (``end`` None: all)."""

    file: LocalFile
    start: int | None
    end: int | None

    @property
    def length(self) -> int:
        if self.start is None:
            return self.file.size
        return (self.end or 0) - self.start


def plan(files: Sequence[LocalFile], serialization: Serialization) -> list[Unit]:
    """The units of work, largest first. Empty files have no shard, as in model-signing."""
    units: list[Unit] = []
    if serialization.method == FILES:
        units = [Unit(f, None, None) for f in files]
    elif serialization.method == SHARDS:
        step = serialization.shard_size or 0
        if step <= 0:
            raise HashingError(".", f"shard size must be positive, got {step}")
        count = sum(-(-f.size // step) for f in files)
        if count > MAX_UNITS:  # a hostile shard size must not make billions of units
            raise HashingError(".", f"shard size {step} cuts the model into {count:,} shards "
                                    f"(at most {MAX_UNITS:,})")
        for f in files:
            units.extend(Unit(f, start, min(start + step, f.size))
                         for start in range(0, f.size, step))
    else:
        raise HashingError(".", f"unknown serialization method {serialization.method!r}")
    units.sort(key=lambda u: u.length, reverse=True)
    return units


def _read_into(handle: int, unit: Unit, hasher: _Hasher, view: memoryview,
               stop: _Stop | None) -> None:
    """Read the unit through ``view`` into ``hasher``. Reads that the page cache can serve are
    plain reads; from the first one it cannot (``RWF_NOWAIT`` fails), the kernel is asked to
    read :data:`PREFETCH` ahead, so the disk is kept busy while the bytes before are hashed."""
    offset = unit.start or 0
    end = offset + unit.length
    nowait, cold, fetched = _NOWAIT, False, offset
    while offset < end:
        if stop is not None and stop.is_set():
            raise HashingError(unit.file.rel, "cancelled")
        if cold and fetched < end and fetched - offset < PREFETCH:
            upto = min(end, offset + 2 * PREFETCH)
            start = max(fetched, offset)
            os.posix_fadvise(handle, start, upto - start, os.POSIX_FADV_WILLNEED)
            fetched = upto
        want = view[:min(len(view), end - offset)]
        got = 0
        if nowait and not cold:
            try:
                got = os.preadv(handle, [want], offset, nowait)
            except BlockingIOError:  # not in the page cache: read ahead from now on
                cold = True
                continue
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                nowait = 0  # this file system cannot say: plain reads
        if got <= 0:  # also where a non-blocking read found nothing: the end, or not
            got = os.preadv(handle, [want], offset)
        if got <= 0:
            raise HashingError(unit.file.rel, "file shrank while it was hashed")
        hasher.update(view[:got])
        offset += got
    if unit.start is None and os.pread(handle, 1, offset):
        raise HashingError(unit.file.rel, "file grew while it was hashed")


class Buffers:
    """One thread's read buffers: :data:`CHUNK` bytes, and :data:`BLAKE3_READ` bytes for a
    large BLAKE3 file, each mapped on first use and kept for the thread's next units."""

    def __init__(self) -> None:
        self._chunk: memoryview | None = None
        self._blake3: memoryview | None = None

    def chunk(self) -> memoryview:
        if self._chunk is None:
            self._chunk = aligned_buffer(CHUNK)
        return self._chunk

    def blake3(self) -> memoryview:
        if self._blake3 is None:
            self._blake3 = aligned_buffer(BLAKE3_READ)
        return self._blake3


def hash_unit(unit: Unit, new: Callable[[], _Hasher], buffers: Buffers,
              hash_type: str, stop: _Stop | None = None) -> bytes:
    """The digest of one unit; :class:`HashingError` when the file cannot be read through."""
    if hash_type == "blake3" and unit.start is None and unit.length >= BLAKE3_PARALLEL_MIN:
        new, buffer = _blake3_threads, buffers.blake3()
    else:
        buffer = buffers.chunk()
    # A link found by the walk was resolved to its target; anything else that is a link by
    # now was swapped in after the walk, and is not followed.
    flags = os.O_RDONLY | (0 if unit.file.link else getattr(os, "O_NOFOLLOW", 0))
    try:
        handle = os.open(unit.file.path, flags)
    except OSError as exc:
        raise HashingError(unit.file.rel, f"cannot open: {exc.strerror}") from None
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle, unit.start or 0, unit.length, os.POSIX_FADV_SEQUENTIAL)
        hasher = new()
        _read_into(handle, unit, hasher, buffer, stop)
        return hasher.digest()
    except OSError as exc:
        if isinstance(exc, HashingError):
            raise
        raise HashingError(unit.file.rel, f"read failed: {exc.strerror}") from None
    finally:
        os.close(handle)


def _blake3_threads() -> _Hasher:
    """A BLAKE3 hasher that spreads each large update over BLAKE3's own thread pool."""
    from blake3 import blake3

    hasher: _Hasher = blake3(max_threads=blake3.AUTO)
    return hasher


class Hashed(NamedTuple):
    """The resources computed, and the files that could not be read."""

    resources: list[Resource]
    errors: list[HashingError]


class Pending:
    """Hashing under way in worker threads: :func:`start_hashing` returns at once, so the
    caller can load keys and import the signing machinery while the bytes are read.

    Each thread takes the next unit (largest first) until none is left. Plain threads, not
    ``concurrent.futures``: its import (and ``logging``'s) is start-up time spent before
    the first byte is hashed."""

    def __init__(self, files: Sequence[LocalFile], serialization: Serialization,
                 workers: int | None) -> None:
        self._new = _factory(serialization.hash_type)
        self._hash_type = serialization.hash_type
        self._algorithm = serialization.algorithm
        self._cancelled = threading.Event()
        self._stop: _Stop = self._cancelled
        self._units = plan(files, serialization)
        self._results: list[Resource | HashingError | None] = [None] * len(self._units)
        self._start(min(max(1, workers or default_workers()), max(1, len(self._units))))

    def _start(self, workers: int) -> None:
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"bastion-hash-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        buffers = Buffers()
        while True:
            with self._lock:
                index = self._next
                if index >= len(self._units):
                    return
                self._next += 1
            self._results[index] = self._run(self._units[index], buffers)

    def _run(self, unit: Unit, buffers: Buffers) -> Resource | HashingError:
        if self._stop.is_set():
            return HashingError(unit.file.rel, "cancelled")
        try:
            digest = hash_unit(unit, self._new, buffers, self._hash_type, self._stop)
        except HashingError as exc:
            return exc
        except Exception as exc:  # never lose a unit: it is reported, not skipped
            return HashingError(unit.file.rel, f"hashing failed: {exc}")
        return Resource(unit.file.rel, digest, self._algorithm, unit.start, unit.end)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join()

    def cancel(self) -> None:
        """Stop: units not started are skipped; the call returns when the workers are done."""
        self._cancelled.set()
        self._join()

    def result(self) -> Hashed:
        """Wait for every unit; results in manifest order."""
        self._join()
        results = [HashingError(u.file.rel, "cancelled") if r is None else r
                   for u, r in zip(self._units, self._results, strict=True)]
        resources = [r for r in results if isinstance(r, Resource)]
        errors = {e.rel: e for e in results if isinstance(e, HashingError)}
        resources = [r for r in resources if r.path not in errors]
        resources.sort(key=Resource.sort_key)
        return Hashed(resources, sorted(errors.values(), key=lambda e: e.rel))


#: Bytes of a unit's index in the forked workers' token pipe, and the most units that pipe
#: may be enlarged to hold (Linux lets any process grow a pipe to 1 MiB).
_TOKEN = 4
_MAX_PIPE = 1 << 20


class _NoFork(Exception):
    """Forked workers cannot be used here; threads are."""


class ForkedPending(Pending):
    """Hashing under way in forked worker processes, for a command-line process whose main
    thread has work of its own meanwhile (loading keys and code, checking the signature).

    Each worker is a thread's work in its own process: it claims the next unit through a pipe
    that holds every unit's index (a 4-byte read from a pipe is atomic), hashes it as a thread
    would, and when no unit is left sends its digests and errors back through a pipe of its
    own. Threads share the GIL with the main thread: measured on 2 vCPUs, 100 ms of Python on
    the main thread during a 4 GB hash added 83 ms to the wall time with hashing threads and
    45 ms with hashing processes (12 rounds); hashing alone is as fast either way.

    Used only where it is safe: on Linux, by a process with no other thread (a fork copies
    only the calling thread, and whatever lock another holds stays locked in the child), for
    ``hashlib`` hashes (BLAKE3 runs its own thread pool). A worker ignores SIGINT (the parent
    decides), stops when its parent is gone, and leaves with ``os._exit``; a worker that dies
    leaves its units reported as errors, never a hang. :meth:`cancel` kills the workers."""

    def _start(self, workers: int) -> None:
        count = len(self._units)
        if not count or not can_fork(self._hash_type):
            raise _NoFork()
        tokens_r, tokens_w = os.pipe()
        try:
            if _TOKEN * count > 65536:
                import fcntl

                try:
                    fcntl.fcntl(tokens_w, fcntl.F_SETPIPE_SZ, min(_MAX_PIPE, _TOKEN * count))
                except OSError:
                    raise _NoFork() from None
                if fcntl.fcntl(tokens_w, fcntl.F_GETPIPE_SZ) < _TOKEN * count:
                    raise _NoFork()
            tokens = b"".join(i.to_bytes(_TOKEN, "little") for i in range(count))
            os.set_blocking(tokens_w, False)  # never wait for a reader that is not there yet
            # Short when the pipe is smaller than 64 KiB (Linux gives a user over the pipe
            # quota one page): then threads do the work.
            if os.write(tokens_w, tokens) != len(tokens):
                raise _NoFork()
        except BaseException:
            os.close(tokens_r)
            raise
        finally:
            os.close(tokens_w)
        self._workers: list[tuple[int, int]] = []
        parent = os.getpid()
        try:
            for _ in range(workers):
                self._fork(tokens_r, parent)
        except OSError:
            self.cancel()
            raise _NoFork() from None
        finally:
            os.close(tokens_r)

    def _fork(self, tokens: int, parent: int) -> None:
        results_r, results_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(results_r)
            os.close(results_w)
            raise
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                os.close(results_r)
                for _, fd in self._workers:
                    os.close(fd)
                signals = _signals()
                signals.signal(signals.SIGINT, signals.SIG_IGN)
                write_all(results_w, self._serve(tokens, parent))
                code = 0
            finally:
                os._exit(code)
        os.close(results_w)
        self._workers.append((pid, results_r))

    def _serve(self, tokens: int, parent: int) -> bytes:
        """The worker's loop: claim, hash, record; the records, when no unit is left."""
        buffers = Buffers()
        records: list[bytes] = []
        self._stop = _Orphaned(parent)  # checked before each unit and each read
        while True:
            token = os.read(tokens, _TOKEN)
            if len(token) < _TOKEN or self._stop.is_set():
                return b"".join(records)
            index = int.from_bytes(token, "little")
            outcome = self._run(self._units[index], buffers)
            if isinstance(outcome, Resource):
                kind, payload = b"d", outcome.digest
            else:
                kind, payload = b"e", outcome.reason.encode("utf-8", "replace")[:4000]
            records.append(token + kind + len(payload).to_bytes(2, "little") + payload)

    def _join(self) -> None:
        while self._workers:  # one at a time: an interrupted wait leaves the rest to cancel()
            pid, fd = self._workers[0]
            data = _read_all(fd)
            del self._workers[0]
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            self._record(data, os.waitstatus_to_exitcode(status))

    def _record(self, data: bytes, code: int) -> None:
        view, at = memoryview(data), 0
        while at + _TOKEN + 3 <= len(view):
            index = int.from_bytes(view[at:at + _TOKEN], "little")
            kind = bytes(view[at + _TOKEN:at + _TOKEN + 1])
            size = int.from_bytes(view[at + _TOKEN + 1:at + _TOKEN + 3], "little")
            payload = bytes(view[at + _TOKEN + 3:at + _TOKEN + 3 + size])
            at += _TOKEN + 3 + size
            if index >= len(self._units) or len(payload) != size:
                break  # a record cut short: what is left is reported missing below
            unit = self._units[index]
            if kind == b"d":
                self._results[index] = Resource(unit.file.rel, payload, self._algorithm,
                                                unit.start, unit.end)
            else:
                self._results[index] = HashingError(unit.file.rel,
                                                    payload.decode("utf-8", "replace"))
        if code != 0:
            for index, unit in enumerate(self._units):
                if self._results[index] is None:
                    self._results[index] = HashingError(
                        unit.file.rel, f"hashing worker stopped (exit status {code})")

    def cancel(self) -> None:
        """Stop: the workers are killed; the call returns when they are gone."""
        workers, self._workers = self._workers, []
        for pid, fd in workers:
            os.close(fd)
            os.kill(pid, _signals().SIGKILL)  # not reaped yet, so still there to be killed
            os.waitpid(pid, 0)


def _signals() -> ModuleType:
    """The C module that ``signal`` wraps (CPython loads it at start-up): ``signal`` itself
    imports ``enum``, 2-7 ms that a fresh worker spent before its first byte (measured), and
    a finished command before it exits. Its numbers and ``signal()`` are the same."""
    loaded = sys.modules.get("_signal")
    if loaded is not None:
        return loaded
    import signal

    return signal


class _Orphaned:
    """A forked worker's stop signal: its parent is gone (it was re-parented)."""

    def __init__(self, parent: int) -> None:
        self._parent = parent

    def is_set(self) -> bool:
        return os.getppid() != self._parent


def can_fork(hash_type: str = "sha256") -> bool:
    """Whether :class:`ForkedPending` may be used here (see its docstring)."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and hash_type != "blake3" and threading.active_count() == 1)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def start_hashing(files: Sequence[LocalFile], serialization: Serialization,
                  workers: int | None = None, *, processes: bool = False) -> Pending:
    """Start hashing every file as ``serialization`` says, in parallel (at least one thread,
    even for one unit, so the caller goes on meanwhile); ``.result()`` waits.

    ``processes``: hash in forked worker processes where that is safe (:class:`ForkedPending`;
    the command line asks for it), in threads otherwise."""
    if processes:
        try:
            return ForkedPending(files, serialization, workers)
        except _NoFork:
            pass
    return Pending(files, serialization, workers)


def hash_files(files: Sequence[LocalFile], serialization: Serialization,
               workers: int | None = None) -> Hashed:
    """Hash every file as ``serialization`` says, in parallel; results in manifest order."""
    return start_hashing(files, serialization, workers).result()
