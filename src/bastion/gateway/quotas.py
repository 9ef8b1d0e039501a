"""Per principal per model quotas: a token bucket for the rate, counters for the budgets.

The rate limit smooths bursts; the query budgets (per UTC day, per UTC month) are the main
brake on model extraction, which needs many thousands of queries. A request is allowed only
when every limit has room, and then it takes one unit from each; a refused request takes
nothing, so a client hammering a closed door does not push its own reopening further away.

``Retry-After`` is the time until every limit that refused would let the request through:
the bucket's refill time for the rate, the next UTC midnight for the day budget, the first
of the next month (00:00 UTC) for the month budget.

Two stores with the same semantics:

* :class:`MemoryQuotas`: one process (a lock around a dict);
* :class:`RedisQuotas`: several gateway replicas share one budget. All checks and updates
  of one request are one Lua script, so they are atomic in Redis; the clock is Redis's own
  (``TIME``), so replicas with skewed clocks still agree on the day and the bucket. One hash
  per quota key holds everything and expires after the current month has ended.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bastion.gateway.errors import GatewayError

if TYPE_CHECKING:
    import redis

DAY = 86_400


class QuotaUnavailable(GatewayError):
    """The quota store (Redis) cannot be reached: the request is refused, never let through."""


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    """``rate`` requests per second refill a bucket of ``burst``; ``math.inf`` means no rate
    limit. ``per_day``/``per_month``: budgets per UTC calendar day/month, ``None`` for none."""

    rate: float
    burst: int
    per_day: int | None = None
    per_month: int | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError("rate must be positive (math.inf for no rate limit)")
        if math.isfinite(self.rate) and self.burst < 1:
            raise ValueError("burst must be at least 1")
        for name in ("per_day", "per_month"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """``reason``: ``ok``, or which limit refused (``rate``, ``day``, ``month``) — the one that
    keeps the door shut longest when several do. ``remaining_*`` count after this request."""

    allowed: bool
    retry_after: float
    remaining_day: int | None
    reason: str
    remaining_month: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """What one quota key has used in the current UTC day and month, and its bucket level
    (refilled to now when the spec is known, else as last stored; ``None`` if never used)."""

    day: int
    month: int
    tokens: float | None


def day_index(now: float) -> int:
    """Days since the epoch (UTC) of the instant ``now``."""
    return math.floor(now / DAY)


def month_index(now: float) -> int:
    """``year * 12 + month - 1`` of the UTC calendar month holding ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    return moment.year * 12 + moment.month - 1


def next_day(now: float) -> float:
    """Epoch seconds of the next UTC midnight."""
    return (day_index(now) + 1) * DAY


def next_month(now: float) -> float:
    """Epoch seconds of the first instant of the next UTC month."""
    following = month_index(now) + 1
    return datetime(following // 12, following % 12 + 1, 1, tzinfo=UTC).timestamp()


def _decide(spec: QuotaSpec, now: float, tokens: float | None, stamp: float,
            day_used: int, month_used: int) -> tuple[QuotaDecision, float]:
    """The decision for one request, and the bucket level to store if it is allowed.

    ``tokens`` is ``None`` for a bucket never used (full). The Lua script mirrors this
    function line by line; the tests hold the two to the same answers.
    """
    waits: list[tuple[float, str]] = []
    level = math.inf
    if math.isfinite(spec.rate):
        level = float(spec.burst) if tokens is None else min(
            float(spec.burst), tokens + max(0.0, now - stamp) * spec.rate)
        if level < 1.0:
            waits.append(((1.0 - level) / spec.rate, "rate"))
    if spec.per_day is not None and day_used >= spec.per_day:
        waits.append((next_day(now) - now, "day"))
    if spec.per_month is not None and month_used >= spec.per_month:
        waits.append((next_month(now) - now, "month"))
    if waits:
        wait, reason = max(waits)
        return QuotaDecision(
            False, wait,
            None if spec.per_day is None else max(0, spec.per_day - day_used), reason,
            None if spec.per_month is None else max(0, spec.per_month - month_used)), level
    return QuotaDecision(
        True, 0.0,
        None if spec.per_day is None else spec.per_day - day_used - 1, "ok",
        None if spec.per_month is None else spec.per_month - month_used - 1), level - 1.0


class MemoryQuotas:
    """Quota state in this process: exact under any number of threads (one lock)."""

    def __init__(self) -> None:
        # key -> [tokens or None, stamp, day index, day count, month index, month count]
        self._state: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def consume(self, key: str, spec: QuotaSpec, now: float | None = None) -> QuotaDecision:
        """Take one request from ``key``'s quota, if every limit has room."""
        now = time.time() if now is None else now
        day, month = day_index(now), month_index(now)
        with self._lock:
            state = self._state.get(key)
            if state is None:
                state = [None, now, day, 0, month, 0]
            day_used = state[3] if state[2] == day else 0
            month_used = state[5] if state[4] == month else 0
            decision, level = _decide(spec, now, state[0], state[1], day_used, month_used)
            if decision.allowed:
                # The stamp never goes back: a clock stepped backwards must not refill twice.
                self._state[key] = [level if math.isfinite(level) else None,
                                    max(now, state[1]), day, day_used + 1, month,
                                    month_used + 1]
            return decision

    def usage(self, key: str, spec: QuotaSpec | None = None,
              now: float | None = None) -> Usage:
        now = time.time() if now is None else now
        with self._lock:
            state = self._state.get(key)
        if state is None:
            state = [None, now, None, 0, None, 0]
        tokens: float | None = state[0]
        if spec is not None and math.isfinite(spec.rate):
            tokens = float(spec.burst) if tokens is None else min(
                float(spec.burst), tokens + max(0.0, now - state[1]) * spec.rate)
        return Usage(state[3] if state[2] == day_index(now) else 0,
                     state[5] if state[4] == month_index(now) else 0, tokens)

    def reset(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


# KEYS[1]: the quota hash. ARGV: rate (or -1: none), burst, per_day (-1: none),
# per_month (-1: none), now (or -1: Redis TIME), 1 to consume (0: only read).
# Returns {allowed, retry_after, remaining_day, remaining_month, reason, day, month, tokens}
# with floats as strings (Redis truncates Lua numbers to integers in replies).
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local per_day = tonumber(ARGV[3])
local per_month = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local consume = ARGV[6] == '1'
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Howard Hinnant's civil calendar algorithms, in days since 1970-01-01.
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m + 9
  if m > 2 then mp = m - 3 end
  local doy = math.floor((153 * mp + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local day = math.floor(now / 86400)
local y, m = civil(day)
local month = y * 12 + m - 1
local ny, nm = y, m + 1
if nm > 12 then ny, nm = y + 1, 1 end
local month_end = days_from_civil(ny, nm) * 86400

local h = redis.call('HMGET', KEYS[1], 'tokens', 'stamp', 'day', 'dn', 'month', 'mn')
local day_used = 0
if h[3] and tonumber(h[3]) == day then day_used = tonumber(h[4]) end
local month_used = 0
if h[5] and tonumber(h[5]) == month then month_used = tonumber(h[6]) end

local level = -1
local wait, reason = -1, 'ok'
if rate > 0 then
  if h[1] then
    local elapsed = now - tonumber(h[2])
    if elapsed < 0 then elapsed = 0 end
    level = math.min(burst, tonumber(h[1]) + elapsed * rate)
  else
    level = burst
  end
  if level < 1 then wait, reason = (1 - level) / rate, 'rate' end
end
if per_day >= 0 and day_used >= per_day then
  local w = (day + 1) * 86400 - now
  if w > wait then wait, reason = w, 'day' end
end
if per_month >= 0 and month_used >= per_month then
  local w = month_end - now
  if w > wait then wait, reason = w, 'month' end
end

local allowed = 0
if wait < 0 and consume then
  allowed = 1
  day_used = day_used + 1
  month_used = month_used + 1
  local stamp = now  -- never back: a clock stepped backwards must not refill twice
  if h[2] and tonumber(h[2]) > now then stamp = tonumber(h[2]) end
  local fields = {'stamp', string.format('%.17g', stamp), 'day', day, 'dn', day_used,
                  'month', month, 'mn', month_used}
  if rate > 0 then
    level = level - 1
    fields[#fields + 1] = 'tokens'
    fields[#fields + 1] = string.format('%.17g', level)
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('EXPIRE', KEYS[1], math.ceil(month_end - now) + 86400)
end
local rd, rm = -1, -1
if per_day >= 0 then rd = math.max(0, per_day - day_used) end
if per_month >= 0 then rm = math.max(0, per_month - month_used) end
if wait < 0 then wait = 0 end
return {allowed, string.format('%.17g', wait), rd, rm, reason, day_used, month_used,
        string.format('%.17g', level)}
"""

_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:@|/+=-]{1,200}")


class RedisQuotas:
    """Quota state in Redis, shared by every gateway replica pointing at the same prefix."""

    def __init__(self, url: str, prefix: str = "bastion", *, timeout: float = 2.0,
                 client: redis.Redis | None = None) -> None:
        import redis as redis_lib

        self.prefix = prefix.rstrip(":") + ":quota:"
        self._client: redis.Redis = client or redis_lib.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30)
        self._script = self._client.register_script(_SCRIPT)
        self._errors: tuple[type[BaseException], ...] = (redis_lib.RedisError,)

    def redis_key(self, key: str) -> str:
        """The Redis key of a quota key: readable when it is plain, hashed when it is not
        (a principal name may hold anything), the two kinds never colliding."""
        if _SAFE_KEY.fullmatch(key):
            return f"{self.prefix}k:{key}"
        return f"{self.prefix}h:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"

    def _run(self, key: str, spec: QuotaSpec, now: float | None, consume: bool) -> list[Any]:
        rate = spec.rate if math.isfinite(spec.rate) else -1
        args: list[str | int] = [repr(float(rate)), spec.burst,
                -1 if spec.per_day is None else spec.per_day,
                -1 if spec.per_month is None else spec.per_month,
                -1 if now is None else repr(float(now)), 1 if consume else 0]
        try:
            reply: list[Any] = self._script(keys=[self.redis_key(key)], args=args)
        except self._errors as exc:
            raise QuotaUnavailable(f"the quota store (Redis) failed: {exc}") from None
        return reply

    def consume(self, key: str, spec: QuotaSpec, now: float | None = None) -> QuotaDecision:
        """Take one request from ``key``'s quota, if every limit has room (atomic in Redis)."""
        allowed, wait, rd, rm, reason = self._run(key, spec, now, True)[:5]
        return QuotaDecision(bool(allowed), float(wait), None if rd < 0 else int(rd),
                             _text(reason), None if rm < 0 else int(rm))

    def usage(self, key: str, spec: QuotaSpec | None = None,
              now: float | None = None) -> Usage:
        if spec is None:
            spec = QuotaSpec(rate=math.inf, burst=1)
        reply = self._run(key, spec, now, False)
        level = float(reply[7])
        if not math.isfinite(spec.rate):
            raw = self._client.hget(self.redis_key(key), "tokens")
            level = float(raw) if raw is not None else -1.0
        return Usage(int(reply[5]), int(reply[6]), None if level < 0 else level)

    def reset(self, key: str) -> None:
        self._client.delete(self.redis_key(key))

    def ping(self) -> None:
        """Raise :class:`QuotaUnavailable` unless Redis answers (the readiness probe)."""
        try:
            self._client.ping()
        except self._errors as exc:
            raise QuotaUnavailable(f"the quota store (Redis) failed: {exc}") from None

    def close(self) -> None:
        self._client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
