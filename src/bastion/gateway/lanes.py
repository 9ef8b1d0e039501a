"""Worker threads that take the event loop's blocking work with as few wake-ups as can be.

Each request's blocking steps (database reads, the model, the audit commit) run off the
event loop. Handing one request to a pool thread and its answer back costs two thread
wake-ups, and on a small machine those (and the threads' fight for the GIL) cost more CPU
than every protection of the gateway together: measured in ``benchmarks/gateway``, ~440 µs
of CPU a request through a thread pool against ~260 µs here, for the same work.

So a thread that is already running keeps going: after each item it takes the next one
queued, without being woken, and gives a run of answers back to the loop with one wake-up
(calling ``after_batch`` first: the gateway commits the run's audit entries there, in one
transaction). A sleeping thread is woken only when no thread runs, when every running
one has been on its current item for ``stall`` seconds (a slow model or database call:
then the queue is not held up behind it), or when the next item is of a kind that spends
``heavy`` or more of CPU outside the GIL (an ONNX Runtime model: see :func:`off_gil`) and
fewer than ``parallel`` threads run: such items gain from running side by side, while
items that hold the GIL only fight over it. Beyond ``parallel`` threads, such a kind counts
as stalled only after ten times ``stall``: its running items already keep the CPUs busy,
and more threads only share them (measured on 2 CPUs: a ~1 ms ONNX model ran on 7 threads
at ~1.95 ms of CPU a request; on 2, ~1.9 ms and 0.78-0.93x of a bare app's throughput
against 0.67-0.79x). ``heavy`` is 0.2 ms: a wake-up costs tens of
µs, and a ~1 ms model spends ~0.4 ms of its request in ONNX Runtime (at 0.5 ms the rule
fired on some days of the VM and not on others). Measured: a ~1 ms model went from 0.70x to
~0.9x of a bare app's throughput, a small model (~30 µs in its runtime) stayed as it was.

Under load a request costs a fraction of a wake-up; idle, the same two as a thread pool.
And a thread holding finished answers gives them back before it starts an item of a kind
(the gateway: operation and model) that took ``stall`` or more lately, or that it has not
seen yet: a quick answer does not wait for a slow model queued behind it.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from contextlib import suppress
from typing import Any, TypeVar

from bastion.cpus import usable_cpus

T = TypeVar("T")

_Item = tuple[Callable[[], Any], "asyncio.Future[Any]", Hashable]
#: Kinds of work whose run times are remembered at once.
_MAX_KINDS = 1024
_Done = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


class LanesClosed(RuntimeError):
    """Work handed to lanes that are closing."""


class Lanes:
    """``await lanes.run(fn)`` runs ``fn()`` in one of at most ``threads`` worker threads,
    each started when first needed. ``parallel`` (default: the CPUs this process may use)
    bounds the threads woken for heavy kinds (see the module's notes)."""

    def __init__(self, threads: int, *, max_batch: int = 16, stall: float = 0.002,
                 heavy: float = 0.0002, parallel: int | None = None,
                 after_batch: Callable[[], None] | None = None,
                 name: str = "bastion-lane") -> None:
        if threads < 1 or max_batch < 1 or stall <= 0 or heavy <= 0:
            raise ValueError("threads and max_batch must be at least 1, stall and heavy "
                             "above 0")
        self.threads = threads
        self.max_batch = max_batch
        self.stall = stall
        self.heavy = heavy
        self.parallel = max(1, parallel if parallel is not None else usable_cpus())
        self.after_batch = after_batch
        self.name = name
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._started: list[threading.Thread] = []  # started when first needed
        self._idle = 0  # threads asleep and not yet woken
        self._waking = 0  # threads woken (or started) that have not yet resumed
        self._busy: dict[int, float] = {}  # running thread -> when its current item began
        self._watching = False  # a stall check is scheduled on the loop
        self._closed = False
        #: kind -> its recent run time (seconds, moving average), at most _MAX_KINDS
        self._costs: dict[Hashable, float] = {}
        #: kind -> CPU its items spent outside the GIL (seconds, moving average; see
        #: :func:`off_gil`)
        self._free: dict[Hashable, float] = {}

    async def run(self, fn: Callable[[], T], kind: Hashable = None) -> T:
        """``fn()``'s result (or exception). ``kind`` names what sort of work it is (the
        gateway: operation and model): items of a kind not yet seen, or that took ``stall``
        or more lately, are started only after the answers already done are given back."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            if self._closed:
                raise LanesClosed("the gateway is shutting down")
            self._queue.append((fn, future, kind))
            self._wake(loop)
        return await future

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake (or start) a thread if the queue would otherwise wait (condition held)."""
        if not self._queue:
            return
        if not self._idle and len(self._started) >= self.threads:
            return  # every thread runs: the first to finish takes it
        now = time.monotonic()
        # A kind that runs outside the GIL keeps ``parallel`` threads busy by itself: more
        # only share the same CPUs, unless those items are stuck (ten stalls).
        stall = self.stall * (10 if self._offloaded(self._queue[0][2]) else 1)
        if not self._waking and (self._heavy_next() or all(
                now - began >= stall for began in self._busy.values())):
            self._waking += 1
            if self._idle:
                self._idle -= 1
                self._cond.notify()
            else:
                index = len(self._started)
                thread = threading.Thread(target=self._serve, args=(index,),
                                          name=f"{self.name}-{index}", daemon=True)
                self._started.append(thread)
                thread.start()
        elif not self._watching:  # look again when the thread on its way, or the running
            # ones, would count as stalled: a burst is not held up behind a slow first item
            self._watching = True
            loop.call_later(self.stall, self._watch, loop)

    def _heavy_next(self) -> bool:
        """The next item is of a kind that spends ``heavy`` or more outside the GIL, and
        fewer than ``parallel`` threads run: worth a wake-up of its own (condition held)."""
        return len(self._busy) < self.parallel and self._offloaded(self._queue[0][2])

    def _offloaded(self, kind: Hashable) -> bool:
        return self._free.get(kind, 0.0) >= self.heavy

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._watching = False
            self._wake(loop)

    def _serve(self, index: int) -> None:
        with self._cond:
            self._waking -= 1  # started by _wake, as if woken
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed:
                        return
                    self._busy.pop(index, None)
                    self._idle += 1  # the waker takes it off
                    self._cond.wait()
                    self._waking = max(0, self._waking - 1)
                done: list[_Done] = []
                while True:
                    fn, future, kind = self._queue.popleft()
                    if done and self._costs.get(kind, math.inf) >= self.stall:
                        # This may take long: answer the run so far first (a quick answer
                        # must not wait for a slow model).
                        self._busy[index] = time.monotonic()
                        self._unlocked(self._finish, done)
                        done = []
                    began = self._busy[index] = time.monotonic()
                    _local.free = 0.0
                    done.append(self._unlocked(_call, fn, future))
                    took = time.monotonic() - began
                    self._learn(kind, took, _local.free)
                    if (not self._queue or len(done) >= self.max_batch
                            or took >= self.stall):
                        break  # answer now: nothing queued, a full run, or a slow item
                # Answering counts as running: this thread looks at the queue again before
                # it sleeps, so work queued meanwhile wakes no other thread.
                self._busy[index] = time.monotonic()
            self._finish(done)

    def _unlocked(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` with the condition released (it is held on entry and on return)."""
        self._cond.release()
        try:
            return fn(*args)
        finally:
            self._cond.acquire()

    def _learn(self, kind: Hashable, took: float, free: float) -> None:
        """Fold ``took`` (wall) and ``free`` (CPU outside the GIL) into the kind's moving
        averages (condition held)."""
        known = self._costs.get(kind)
        if known is None and len(self._costs) >= _MAX_KINDS:
            self._costs.clear()  # bounded; relearned in a few items
            self._free.clear()
        self._costs[kind] = took if known is None else 0.8 * known + 0.2 * took
        spent = self._free.get(kind)
        self._free[kind] = free if spent is None else 0.8 * spent + 0.2 * free

    def _finish(self, done: list[_Done]) -> None:
        if self.after_batch is not None:
            # The hook reports its own failures (the audit log: to each entry's future);
            # none may cost the run its answers.
            with suppress(Exception):
                self.after_batch()
        by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
        for item in done:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with suppress(RuntimeError):  # a closed loop: no one awaits these any more
                loop.call_soon_threadsafe(_deliver, items)

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish what is queued, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            started = list(self._started)
        for thread in started:
            if thread is not threading.current_thread():
                thread.join(timeout)


def off_gil(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, for code that runs (mostly) without the GIL, such as an ONNX Runtime
    or TorchScript model: its CPU time is counted for the kind of work the calling lane
    runs. A kind that spends ``heavy`` or more there is given a thread of its own (up to
    ``parallel`` at once); one that holds the GIL gains nothing from a second thread and
    keeps to one, as before."""
    began = time.thread_time()
    try:
        return fn(*args)
    finally:
        if hasattr(_local, "free"):  # on a lane
            _local.free += time.thread_time() - began


_local = threading.local()


def _call(fn: Callable[[], Any], future: asyncio.Future[Any]) -> _Done:
    """``fn()``'s outcome, for ``future``."""
    try:
        return (future, fn(), None)
    except StopIteration as exc:  # a future cannot hold one
        error = RuntimeError(f"the work raised StopIteration: {exc}")
        error.__cause__ = exc
        return (future, None, error)
    except BaseException as exc:  # given to the awaiting coroutine
        return (future, None, exc)


def _deliver(items: list[_Done]) -> None:
    for future, result, exc in items:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
