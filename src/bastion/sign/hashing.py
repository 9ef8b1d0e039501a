"""Hashing a model's files: every core busy, one pass over the bytes, bounded memory.

The work is cut into units (a whole file, or one shard of it), largest first so the last
unit to finish is a small one, and handed to a pool of threads: ``hashlib`` and ``blake3``
release the GIL while they hash and the kernel while it reads, so threads scale like
processes without copying data between them. Each thread reads into its own reusable,
page-aligned buffers (:class:`Buffers`: :data:`CHUNK` bytes, and :data:`BLAKE3_READ` for a
large BLAKE3 file; see :func:`bastion.files.aligned_buffer`), so memory is bounded by the
thread count whatever the model's size.

SHA-256 cannot hash one stream in parallel, so a large file in the ``files`` method is one
unit; the ``shards`` method (the default) cuts it into shards that hash side by side. BLAKE3
is parallel inside one stream, so its ``files`` method spreads a large file over every core
by itself, reading it in :data:`BLAKE3_READ` pieces. Not memory-mapped, as model-signing
does: a mapped file truncated while it is hashed kills the process with ``SIGBUS`` (measured
with ``blake3``'s ``update_mmap``: exit 135, no message), where a read comes up short and
says so.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable, Sequence

from bastion.cpus import usable_cpus
from bastion.files import aligned_buffer
from bastion.records import NamedTuple
from bastion.sign.manifest import FILES, SHARDS, LocalFile, Resource, Serialization

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from typing import Protocol

    class _Hasher(Protocol):
        def update(self, data: bytes | memoryview, /) -> object: ...
        def digest(self) -> bytes: ...

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
               stop: threading.Event | None) -> None:
    offset = unit.start or 0
    remaining = unit.length
    while remaining > 0:
        if stop is not None and stop.is_set():
            raise HashingError(unit.file.rel, "cancelled")
        got = os.preadv(handle, [view[:min(len(view), remaining)]], offset)
        if got <= 0:
            raise HashingError(unit.file.rel, "file shrank while it was hashed")
        hasher.update(view[:got])
        offset += got
        remaining -= got
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
              hash_type: str, stop: threading.Event | None = None) -> bytes:
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
        self._stop = threading.Event()
        self._units = plan(files, serialization)
        self._results: list[Resource | HashingError | None] = [None] * len(self._units)
        self._next = 0
        self._lock = threading.Lock()
        workers = min(max(1, workers or default_workers()), max(1, len(self._units)))
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
        """Stop: units not started are skipped; the call returns when the threads are done."""
        self._stop.set()
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


def start_hashing(files: Sequence[LocalFile], serialization: Serialization,
                  workers: int | None = None) -> Pending:
    """Start hashing every file as ``serialization`` says, in parallel (at least one thread,
    even for one unit, so the caller goes on meanwhile); ``.result()`` waits."""
    return Pending(files, serialization, workers)


def hash_files(files: Sequence[LocalFile], serialization: Serialization,
               workers: int | None = None) -> Hashed:
    """Hash every file as ``serialization`` says, in parallel; results in manifest order."""
    return start_hashing(files, serialization, workers).result()
