"""Quotas: token bucket and day/month budgets, in memory and in the real Redis on
127.0.0.1:6379 — the same answers from both, exact under concurrent threads and processes."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bastion.gateway.quotas import (
    MemoryQuotas,
    QuotaSpec,
    QuotaUnavailable,
    RedisQuotas,
    next_day,
    next_month,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"bastion-test-{uuid.uuid4().hex}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryQuotas()
        return
    quotas = RedisQuotas(REDIS_URL, prefix=request.getfixturevalue("redis_prefix"))
    yield quotas
    quotas.close()


NOON = ts(2025, 3, 14, 12, 0, 0)


def test_token_bucket(store: Any) -> None:
    spec = QuotaSpec(rate=2.0, burst=3)
    assert [store.consume("k", spec, NOON).allowed for _ in range(3)] == [True] * 3
    denied = store.consume("k", spec, NOON)
    assert not denied.allowed
    assert denied.reason == "rate"
    assert denied.retry_after == pytest.approx(0.5)
    later = store.consume("k", spec, NOON + 0.25)
    assert not later.allowed
    assert later.retry_after == pytest.approx(0.25)
    assert store.consume("k", spec, NOON + 0.5).allowed
    assert not store.consume("k", spec, NOON + 0.5).allowed
    # A long pause refills to the burst, never beyond it.
    assert [store.consume("k", spec, NOON + 100).allowed for _ in range(4)] == [True] * 3 + [
        False]


def test_denied_requests_consume_nothing(store: Any) -> None:
    spec = QuotaSpec(rate=1.0, burst=1, per_day=5)
    assert store.consume("k", spec, NOON).allowed
    for i in range(200):  # hammering the closed door
        assert not store.consume("k", spec, NOON + i * 0.001).allowed
    assert store.consume("k", spec, NOON + 1.0).allowed  # opens exactly on time
    assert store.usage("k", spec, NOON + 1.0).day == 2


def test_day_budget_and_retry_after(store: Any) -> None:
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=5)
    remaining = [store.consume("k", spec, NOON).remaining_day for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    denied = store.consume("k", spec, NOON)
    assert not denied.allowed
    assert denied.reason == "day"
    assert denied.remaining_day == 0
    assert denied.retry_after == pytest.approx(12 * 3600)
    assert not store.consume("k", spec, ts(2025, 3, 14, 23, 59, 59)).allowed
    fresh = store.consume("k", spec, ts(2025, 3, 15, 0, 0, 0))
    assert fresh.allowed
    assert fresh.remaining_day == 4


@pytest.mark.parametrize(("start", "boundary"), [
    (ts(2024, 2, 27, 9), ts(2024, 3, 1)),  # leap February
    (ts(2025, 2, 26, 9), ts(2025, 3, 1)),
    (ts(2025, 12, 29, 9), ts(2026, 1, 1)),  # year rollover
])
def test_month_budget(store: Any, start: float, boundary: float) -> None:
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=10, per_month=2)
    assert store.consume("k", spec, start).allowed
    assert store.consume("k", spec, start + 86_400).remaining_month == 0
    denied = store.consume("k", spec, start + 2 * 86_400)
    assert not denied.allowed
    assert denied.reason == "month"
    assert denied.retry_after == pytest.approx(boundary - (start + 2 * 86_400))
    assert store.consume("k", spec, boundary).allowed


def test_longest_wait_wins(store: Any) -> None:
    hourly = QuotaSpec(rate=1 / 3600, burst=1, per_day=1)
    assert store.consume("a", hourly, NOON).allowed
    denied = store.consume("a", hourly, NOON + 1800)  # bucket: 1800 s, day: 11.5 h
    assert denied.reason == "day"
    assert denied.retry_after == pytest.approx(41_400)
    slow = QuotaSpec(rate=1 / 7200, burst=1, per_day=1)
    assert store.consume("b", slow, ts(2025, 3, 14, 23)).allowed
    denied = store.consume("b", slow, ts(2025, 3, 14, 23, 30))  # bucket: 5400 s, day: 1800 s
    assert denied.reason == "rate"
    assert denied.retry_after == pytest.approx(5400)
    only_rate = QuotaSpec(rate=1 / 3600, burst=1, per_day=2)
    assert store.consume("c", only_rate, NOON).allowed
    denied = store.consume("c", only_rate, NOON)
    assert denied.reason == "rate"
    assert denied.retry_after == pytest.approx(3600)
    assert denied.remaining_day == 1


def test_keys_are_independent_and_usage(store: Any) -> None:
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=2, per_month=10)
    for key in ("alice|m", "bob|m", "alice|other", "weird key {with} spaces\u00e9"):
        assert store.consume(key, spec, NOON).allowed
    assert store.consume("alice|m", spec, NOON).allowed
    assert not store.consume("alice|m", spec, NOON).allowed
    used = store.usage("alice|m", spec, NOON)
    assert (used.day, used.month) == (2, 2)
    assert store.usage("bob|m", spec, NOON).day == 1
    assert store.usage("weird key {with} spaces\u00e9", spec, NOON).day == 1
    assert store.usage("nobody", spec, NOON).day == 0
    tomorrow = store.usage("alice|m", spec, NOON + 86_400)
    assert (tomorrow.day, tomorrow.month) == (0, 2)


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        QuotaSpec(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        QuotaSpec(rate=1, burst=0)
    with pytest.raises(ValueError, match="per_day"):
        QuotaSpec(rate=1, burst=1, per_day=-1)


def hammer(store: Any, key: str, spec: QuotaSpec, threads: int, attempts: int) -> int:
    allowed = 0
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        nonlocal allowed
        barrier.wait()
        mine = sum(store.consume(key, spec).allowed for _ in range(attempts))
        with lock:
            allowed += mine

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return allowed


def test_exact_under_50_threads_budget(store: Any) -> None:
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=137)
    assert hammer(store, "k", spec, threads=50, attempts=6) == 137
    assert store.usage("k", spec).day == 137


def test_exact_under_50_threads_bucket(store: Any) -> None:
    spec = QuotaSpec(rate=1e-6, burst=41)  # no refill within the test
    assert hammer(store, "k", spec, threads=50, attempts=2) == 41


def test_redis_two_processes_share_one_budget(redis_prefix: str) -> None:
    script = textwrap.dedent(f"""
        import math, sys, threading
        from bastion.gateway.quotas import QuotaSpec, RedisQuotas
        quotas = RedisQuotas({REDIS_URL!r}, prefix={redis_prefix!r})
        spec = QuotaSpec(rate=math.inf, burst=1, per_day=400, per_month=10_000)
        quotas.ping()
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        counts = []
        def work():
            counts.append(sum(quotas.consume("shared|m", spec).allowed for _ in range(20)))
        threads = [threading.Thread(target=work) for _ in range(25)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(sum(counts))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    counts = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        counts.append(int(out))
    assert sum(counts) == 400  # 1000 attempts, exactly the budget allowed
    assert all(c > 0 for c in counts)  # both replicas really took part


def test_redis_keys_are_prefixed_and_expire(redis_prefix: str) -> None:
    import redis

    quotas = RedisQuotas(REDIS_URL, prefix=redis_prefix)
    spec = QuotaSpec(rate=5, burst=5, per_day=10, per_month=100)
    quotas.consume("alice|iris", spec)
    quotas.consume("eve {x}\n|iris", spec)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = sorted(k.decode() for k in client.scan_iter(f"{redis_prefix}:*"))
        assert keys[0].startswith(f"{redis_prefix}:quota:h:")  # hashed: not a plain name
        assert keys[1] == f"{redis_prefix}:quota:k:alice|iris"
        for key in keys:
            ttl = client.ttl(key)
            assert 86_400 < ttl <= 32 * 86_400 + 1
    finally:
        client.close()
        quotas.close()


def test_redis_calendar_matches_python(redis_prefix: str) -> None:
    """The Lua script's own calendar (day and month boundaries) agrees with Python's."""
    quotas = RedisQuotas(REDIS_URL, prefix=redis_prefix)
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=1000, per_month=0)
    rng = random.Random(7)
    moments = [rng.uniform(0, ts(2100, 1, 1)) for _ in range(300)]
    moments += [ts(2024, 2, 29, 23, 59, 59), ts(2000, 2, 29), ts(1999, 12, 31, 23, 59, 59)]
    try:
        for now in moments:
            decision = quotas.consume("cal", spec, now)
            assert decision.reason == "month"
            assert decision.retry_after == pytest.approx(next_month(now) - now, abs=1e-6)
        day_spec = QuotaSpec(rate=math.inf, burst=1, per_day=0)
        for now in moments[:50]:
            decision = quotas.consume("cal", day_spec, now)
            assert decision.retry_after == pytest.approx(next_day(now) - now, abs=1e-6)
    finally:
        quotas.close()


def test_redis_server_time_is_used(redis_prefix: str) -> None:
    quotas = RedisQuotas(REDIS_URL, prefix=redis_prefix)
    spec = QuotaSpec(rate=math.inf, burst=1, per_day=1)
    try:
        assert quotas.consume("clock", spec).allowed
        denied = quotas.consume("clock", spec)
        import time

        assert denied.retry_after == pytest.approx(next_day(time.time()) - time.time(), abs=5)
    finally:
        quotas.close()


def test_redis_unreachable_is_an_error_not_an_open_door() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quotas = RedisQuotas(f"redis://127.0.0.1:{port}/0", prefix="x", timeout=0.5)
    with pytest.raises(QuotaUnavailable, match="Redis"):
        quotas.consume("k", QuotaSpec(rate=1, burst=1))
    with pytest.raises(QuotaUnavailable):
        quotas.ping()
    quotas.close()
