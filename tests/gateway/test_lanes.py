"""The gateway's worker lanes: every answer reaches its own coroutine, queued items are taken
in runs answered with one ``after_batch`` call, a slow item does not hold up others when
another thread is free, and close finishes queued work then refuses more.

Real threads and real event loops (``asyncio.run``); blocking items wait on
``threading.Event``s, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from bastion.gateway.lanes import Lanes, LanesClosed, off_gil

WAIT = 20.0  # the most a test waits for anything: a broken lane fails the test, not hangs it


class _Made:
    """Lanes made by a test, under a name of their own; released and closed afterwards."""

    def __init__(self) -> None:
        self.prefix = f"test-lane-{uuid.uuid4().hex[:8]}"
        self.release = threading.Event()  # what blocking items wait for
        self.lanes: list[Lanes] = []

    def __call__(self, threads: int, **options: Any) -> Lanes:
        lanes = Lanes(threads, name=self.prefix, **options)
        self.lanes.append(lanes)
        return lanes

    def alive(self) -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(self.prefix)]


@pytest.fixture
def made() -> Iterator[_Made]:
    made = _Made()
    try:
        yield made
    finally:
        made.release.set()
        for lanes in made.lanes:
            lanes.close(timeout=WAIT)
    assert made.alive() == []


def _blocker(made: _Made, started: threading.Event) -> Callable[[], bool]:
    """An item that says it started, then waits for the test to release it."""
    def fn() -> bool:
        started.set()
        return made.release.wait(WAIT)
    return fn


async def _until(event: threading.Event) -> None:
    """Wait on the loop (which keeps running) until a thread sets ``event``."""
    for _ in range(int(WAIT / 0.001)):
        if event.is_set():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the event was never set")


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), WAIT))


async def _queued(lanes: Lanes, fns: list[Callable[[], Any]]) -> list[asyncio.Task[Any]]:
    """Tasks running ``lanes.run`` on each of ``fns``, returned once every one is queued
    (``run`` queues before its first suspension, right after ``entered`` counts it)."""
    entered: list[int] = []

    async def one(fn: Callable[[], Any]) -> Any:
        entered.append(1)
        return await lanes.run(fn)

    tasks = [asyncio.ensure_future(one(fn)) for fn in fns]
    while len(entered) < len(fns):
        await asyncio.sleep(0)
    return tasks


@pytest.mark.parametrize("options", [{"threads": 0}, {"max_batch": 0}, {"stall": 0},
                                     {"heavy": 0}])
def test_bad_settings_are_refused(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {"threads": 1, "max_batch": 1, "stall": 0.01, **options}
    with pytest.raises(ValueError, match="at least 1"):
        Lanes(settings.pop("threads"), **settings)


def test_each_coroutine_gets_its_own_answer(made: _Made) -> None:
    lanes = made(4, stall=0.001)

    def work(i: int) -> tuple[int, str]:
        if i % 7 == 3:
            raise ValueError(f"item {i}")
        if i % 5 == 0:
            threading.Event().wait(0.001)  # some items slower: answers arrive out of order
        return i, threading.current_thread().name

    async def one(i: int) -> None:
        if i % 7 == 3:
            with pytest.raises(ValueError, match=rf"^item {i}$"):
                await lanes.run(lambda: work(i))
            return
        got, thread = await lanes.run(lambda: work(i))
        assert got == i
        assert thread.startswith(made.prefix)  # run in a lane, not on the loop's thread

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(400)))

    _run(main)


def test_an_exception_reaches_the_awaiting_coroutine_and_the_lane_carries_on(
        made: _Made) -> None:
    lanes = made(1)
    raised = KeyError("no such model")
    threads: list[str] = []

    def fails() -> None:
        threads.append(threading.current_thread().name)
        raise raised

    def works() -> int:
        threads.append(threading.current_thread().name)
        return 5

    async def main() -> None:
        with pytest.raises(KeyError, match="no such model") as caught:
            await lanes.run(fails)
        assert caught.value is raised
        with pytest.raises(ZeroDivisionError, match="by zero"):
            await lanes.run(lambda: 1 // 0)
        assert await lanes.run(works) == 5
        assert await asyncio.gather(*(lanes.run(lambda i=i: i * i) for i in range(20))) \
            == [i * i for i in range(20)]

    _run(main)
    assert threads == [f"{made.prefix}-0"] * 2  # the one lane thread served both


@pytest.mark.parametrize(("max_batch", "runs"), [(16, 1), (4, 3)])
def test_queued_items_are_answered_in_runs(made: _Made, max_batch: int, runs: int) -> None:
    """One thread, busy on a first item while 11 more are queued: it takes them without being
    woken, and answers them in runs of at most ``max_batch``, with one ``after_batch`` each
    (called in the lane thread, before the run's answers are delivered)."""
    calls: list[str] = []
    order: list[int] = []

    def after_batch() -> None:
        # Slow enough that an answer delivered before it returned would be seen early.
        threading.Event().wait(0.02)
        calls.append(threading.current_thread().name)

    lanes = made(1, max_batch=max_batch, stall=60.0,  # no item counts as slow here
                 after_batch=after_batch)
    started = threading.Event()

    def item(i: int) -> int:
        order.append(i)
        return i * 10

    async def main() -> None:
        first = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        rest = await _queued(lanes, [lambda i=i: item(i) for i in range(11)])
        made.release.set()
        assert await first is True
        assert calls  # its run's after_batch came first
        for i, task in enumerate(rest):
            assert await task == i * 10
            # The run holding item i (the blocker is the run's first item) was committed.
            assert len(calls) >= (i + 1) // max_batch + 1

    _run(main)
    assert order == list(range(11))  # in the order queued
    assert len(calls) == runs < 12
    assert set(calls) == {f"{made.prefix}-0"}


def test_after_batch_failing_loses_no_answer(made: _Made) -> None:
    calls: list[int] = []

    def after_batch() -> None:
        calls.append(1)
        raise RuntimeError("commit failed")

    lanes = made(1, stall=60.0, after_batch=after_batch)
    started = threading.Event()

    async def main() -> None:
        first = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        rest = await _queued(lanes, [lambda i=i: i for i in range(8)])
        made.release.set()
        assert await first is True
        assert await asyncio.gather(*rest) == list(range(8))
        assert await lanes.run(lambda: "still serving") == "still serving"

    _run(main)
    assert len(calls) == 2  # the run of nine, then the last one: each raised


@pytest.mark.parametrize("burst", [False, True], ids=["after-it-started", "same-loop-step"])
def test_a_stalled_item_does_not_hold_up_the_next_when_a_thread_is_free(made: _Made,
                                                                       burst: bool) -> None:
    # burst: the quick item is queued first and the slow one right behind it, before any
    # thread resumes; one thread takes both in a run, and must answer the quick one before
    # it starts the slow one (a kind it has not seen: it may take long).
    lanes = made(2, stall=0.01)
    started = threading.Event()

    async def main() -> None:
        slow = asyncio.ensure_future(lanes.run(_blocker(made, started), "slow"))
        if not burst:
            await _until(started)
        # Answered (by the other thread, or before the slow one starts) while it is not done.
        assert await lanes.run(made.release.is_set) is False
        assert not slow.done()
        made.release.set()
        assert await slow is True

    _run(main)


def test_answers_done_are_given_before_an_item_of_a_slow_kind(made: _Made) -> None:
    # One thread, a kind that has taken long before: the answers of the quick items run
    # before it are delivered before it starts, not after it ends.
    lanes = made(1, stall=0.01)
    started = threading.Event()
    hold = threading.Event()  # what the slow item waits for

    async def main() -> None:
        assert await lanes.run(lambda: time.sleep(0.02) or "learnt", "slow") == "learnt"
        first = asyncio.ensure_future(lanes.run(_blocker(made, started), "gate"))
        await _until(started)  # the thread is held: what follows queues behind
        rest = await _queued(lanes, [lambda: "quick"])
        slow = asyncio.ensure_future(lanes.run(lambda: hold.wait(WAIT), "slow"))
        await asyncio.sleep(0)  # queued: gate, then quick, then slow
        made.release.set()
        assert await first is True
        assert await rest[0] == "quick"  # while the slow one still runs
        assert not slow.done()
        hold.set()
        assert await slow is True

    try:
        _run(main)
    finally:
        hold.set()


def test_stop_iteration_reaches_its_waiter_and_no_answer_is_lost(made: _Made) -> None:
    # A future cannot hold StopIteration (asyncio refuses it with TypeError): were it handed
    # on as is, the rest of the run would never be answered.
    lanes = made(1, stall=60.0)
    started = threading.Event()

    def empty() -> Any:
        return next(iter(()))

    async def main() -> None:
        first = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        rest = await _queued(lanes, [empty, lambda: "after"])
        made.release.set()
        assert await first is True
        with pytest.raises(RuntimeError, match="StopIteration") as caught:
            await rest[0]
        assert isinstance(caught.value.__cause__, StopIteration)
        assert await rest[1] == "after"

    _run(main)


def test_with_one_thread_the_next_item_waits_for_the_stalled_one(made: _Made) -> None:
    lanes = made(1, stall=0.01)
    started = threading.Event()

    async def main() -> None:
        slow = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        quick = asyncio.ensure_future(lanes.run(made.release.is_set))
        done, _ = await asyncio.wait({quick}, timeout=0.2)
        assert not done  # no thread to take it: it cannot have run
        made.release.set()
        assert await quick is True  # it ran only after the release
        assert await slow is True

    _run(main)


def _burn() -> int:
    """A few milliseconds of CPU (here in Python: the lanes count what off_gil says)."""
    return sum(range(200_000))


@pytest.mark.parametrize(("counted", "parallel", "second_thread"), [
    (True, 2, True),  # work outside the GIL, a CPU free: a thread of its own at once
    (False, 2, False),  # as much CPU, holding the GIL: a second thread would only contend
    (True, 1, False),  # no more threads on heavy kinds than `parallel`
], ids=["off-gil", "holds-gil", "parallel-1"])
def test_a_kind_that_runs_outside_the_gil_gets_a_second_thread_at_once(
        made: _Made, counted: bool, parallel: int, second_thread: bool) -> None:
    # stall=60: the running thread never counts as stalled; only the kind's own record of
    # CPU spent outside the GIL can wake the second thread.
    lanes = made(2, stall=60.0, heavy=0.0005, parallel=parallel)
    started = threading.Event()

    def model() -> int:
        return off_gil(_burn) if counted else _burn()

    async def main() -> None:
        await lanes.run(model, "model")  # learnt: ~ms of CPU, counted or not
        first = asyncio.ensure_future(lanes.run(_blocker(made, started), "model"))
        await _until(started)
        second = asyncio.ensure_future(lanes.run(made.release.is_set, "model"))
        done, _ = await asyncio.wait({second}, timeout=WAIT if second_thread else 0.2)
        if second_thread:
            assert done
            assert await second is False
        else:
            assert not done  # waits for the one running thread
        made.release.set()
        assert await first is True
        assert await second is (not second_thread)  # ran before the release, or after

    _run(main)


def test_a_kind_outside_the_gil_gets_no_more_than_parallel_threads_until_stuck(
        made: _Made) -> None:
    """Threads beyond ``parallel`` for a kind that already keeps the CPUs busy would only
    share them (measured: a ~1 ms ONNX model on 2 CPUs used 7 threads and ~25% more CPU a
    request): its items count as stalled only after ten times ``stall``."""
    lanes = made(2, stall=0.05, heavy=0.0005, parallel=1)
    started = threading.Event()

    async def main() -> None:
        await lanes.run(lambda: off_gil(_burn), "model")  # learnt: runs outside the GIL
        first = asyncio.ensure_future(lanes.run(_blocker(made, started), "model"))
        await _until(started)
        second = asyncio.ensure_future(lanes.run(made.release.is_set, "model"))
        done, _ = await asyncio.wait({second}, timeout=0.3)  # six stalls: still waiting
        assert not done
        # Ten stalls (0.5 s): stuck, so the queue is not held up behind it any longer.
        assert await asyncio.wait_for(second, WAIT) is False
        made.release.set()
        assert await first is True

    _run(main)


def test_off_gil_outside_a_lane_just_calls() -> None:
    assert off_gil(lambda x: x + 1, 1) == 2
    with pytest.raises(ZeroDivisionError):
        off_gil(lambda: 1 // 0)


def test_close_finishes_queued_work_then_refuses(made: _Made) -> None:
    lanes = made(3, stall=60.0)
    started = threading.Event()
    ran: list[int] = []

    def item(i: int) -> int:
        ran.append(i)
        return -i

    async def main() -> None:
        first = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        rest = await _queued(lanes, [lambda i=i: item(i) for i in range(10)])
        assert made.alive() == [f"{made.prefix}-0"]  # no other thread was needed
        made.release.set()
        lanes.close(timeout=WAIT)  # blocks the loop: the answers are delivered after
        assert sorted(ran) == list(range(10))  # all of it ran before close returned
        assert made.alive() == []
        assert await first is True
        assert await asyncio.gather(*rest) == [-i for i in range(10)]
        with pytest.raises(LanesClosed, match="shutting down"):
            await lanes.run(lambda: 1)

    _run(main)
    assert issubclass(LanesClosed, RuntimeError)
    lanes.close()  # a second close is harmless


def test_threads_start_when_needed_and_close_stops_them(made: _Made) -> None:
    unused = made(4)
    assert made.alive() == []  # none started before any work
    unused.close(timeout=WAIT)
    lanes = made(4, stall=0.005)
    assert made.alive() == []

    async def main() -> None:
        assert await asyncio.gather(*(lanes.run(lambda i=i: i) for i in range(50))) \
            == list(range(50))
        assert 1 <= len(made.alive()) <= 4
        lanes.close(timeout=WAIT)  # idle threads: they stop at once
        assert made.alive() == []
        with pytest.raises(LanesClosed):
            await lanes.run(lambda: 1)

    _run(main)


def test_no_more_than_the_given_threads(made: _Made) -> None:
    """Each stalled item gets a thread of its own, up to ``threads``; further items wait for
    one of them."""
    lanes = made(3, stall=0.005)
    started = [threading.Event() for _ in range(5)]

    async def main() -> None:
        tasks = []
        for event in started[:3]:
            tasks.append(asyncio.ensure_future(lanes.run(_blocker(made, event))))
            await _until(event)  # the ones before it still block: a new thread took it
        assert sorted(made.alive()) == [f"{made.prefix}-{i}" for i in range(3)]
        for event in started[3:]:
            tasks.append(asyncio.ensure_future(lanes.run(_blocker(made, event))))
        await asyncio.sleep(0.1)  # the watch runs every 5 ms: time enough to start more
        assert not any(event.is_set() for event in started[3:])  # no thread for them
        assert len(made.alive()) == 3
        made.release.set()
        assert await asyncio.gather(*tasks) == [True] * 5

    _run(main)


def test_a_cancelled_waiter_does_not_break_the_lane(made: _Made) -> None:
    lanes = made(1, stall=60.0)
    started = threading.Event()
    finished = threading.Event()

    def blocked() -> str:
        _blocker(made, started)()
        finished.set()
        return "nobody listens"

    async def main() -> None:
        waiter = asyncio.ensure_future(lanes.run(blocked))
        await _until(started)
        rest = await _queued(lanes, [lambda i=i: i for i in range(5)])  # same run as it
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        made.release.set()
        assert await asyncio.gather(*rest) == list(range(5))
        assert finished.is_set()  # the item itself ran to its end
        assert await lanes.run(lambda: "next") == "next"
        assert await asyncio.gather(*(lanes.run(lambda i=i: i) for i in range(30))) \
            == list(range(30))

    _run(main)


def test_one_run_answers_each_event_loop(made: _Made) -> None:
    """Items queued from two event loops (two threads) answered in one run: each loop gets
    its own answers."""
    calls: list[int] = []
    lanes = made(1, stall=60.0, after_batch=lambda: calls.append(1))
    started = threading.Event()
    other_queued = threading.Event()
    other_got: list[Any] = []

    def other_thread() -> None:
        async def other() -> None:
            tasks = await _queued(lanes, [lambda i=i: ("other", i) for i in range(5)])
            other_queued.set()
            other_got.extend(await asyncio.gather(*tasks))
        asyncio.run(asyncio.wait_for(other(), WAIT))

    async def main() -> None:
        first = asyncio.ensure_future(lanes.run(_blocker(made, started)))
        await _until(started)
        thread = threading.Thread(target=other_thread)
        thread.start()
        await _until(other_queued)
        mine = await _queued(lanes, [lambda i=i: ("main", i) for i in range(5)])
        made.release.set()
        assert await first is True
        assert await asyncio.gather(*mine) == [("main", i) for i in range(5)]
        await asyncio.to_thread(thread.join, WAIT)
        assert not thread.is_alive()

    _run(main)
    assert other_got == [("other", i) for i in range(5)]
    assert calls == [1]  # all eleven in one run
