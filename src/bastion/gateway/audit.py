"""The audit log: every request, appended to a hash chain that shows any edit after the fact.

Each entry's hash is ``sha256(prev_hash + "\\n" + canonical_json({"seq": seq, **entry}))``
(the first entry's ``prev_hash`` is 64 zeros). The sequence number is inside the hashed
text, so moving an entry to another position breaks it; editing an entry breaks its own hash;
deleting or inserting one breaks the link of the entry after it; cutting entries off the end
is shown by the head record (``bastion_audit_head``: last seq and hash), which is written in
the same transaction as the entries. :func:`verify` checks all of it.

Appends are serialized across threads and processes (``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL, as :func:`bastion.db.exclusive`), so several
gateway processes on one database still build one chain. :class:`AuditWriter` batches the
entries of concurrent requests into one transaction (group commit) on a background thread;
the gateway awaits the future of its entry before it answers, so every answer the client saw
is in a committed entry. A process killed with ``kill -9`` loses only entries it had not yet
committed, and never leaves a half-written one: the chain still verifies.

Entries hold no secret and no raw data: the input's SHA-256, a short output summary, and
bounded, sanitized strings (a NUL or an unpaired surrogate would make a row unwritable, and
the gateway must never fail to audit because a client sent odd bytes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import operator
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine

from bastion.db import storage_errors
from bastion.gateway.errors import GatewayError
from bastion.gateway.tables import VERSION_MAX, AuditHeadRow, AuditRow

_log = logging.getLogger(__name__)

#: The ``prev_hash`` of the first entry.
GENESIS = "0" * 64
DECISIONS = frozenset({"allow", "deny", "rate_limited", "error"})
#: The name appends are serialized under (PostgreSQL advisory lock).
_LOCK = "bastion.audit"
#: Rows read per query by :func:`verify` and :func:`export_jsonl`: bounded memory.
_PAGE = 2000
#: Maximum length of each text field, in characters (the columns' sizes).
_LIMITS = {"principal": 256, "model": 128, "version": VERSION_MAX, "permission": 16,
           "reason": 512, "output_summary": 512, "client": 128}


class AuditUnavailable(GatewayError):
    """The audit log cannot take the entry (writer closed, or too many pending): the request
    must not be answered as if it had been recorded."""


def _text(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and "\x00" not in text:  # (isascii is a flag lookup in CPython)
        return text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


def now_iso() -> str:
    """The current time as the log writes it: ISO 8601, UTC, microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def digest_input(body: bytes) -> str:
    """The SHA-256 (hex) the log records instead of a request body."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One request as audited. Strings are clipped and sanitized on construction, so what
    is hashed is exactly what is stored."""

    ts: str = field(default_factory=now_iso)
    principal: str
    model: str
    version: str = ""
    permission: str = ""
    decision: str
    reason: str = ""
    status: int = 0
    input_digest: str = ""  # sha256 hex of the request body, or "" (none read)
    output_summary: str = ""  # short, never raw data: "label", "3 scores", ...
    latency_ms: float = 0.0
    client: str = ""  # the client address

    def __post_init__(self) -> None:
        texts = _limited(self)
        joined = "".join(texts) if all(type(t) is str for t in texts) else "\x00"
        if not (joined.isascii() and "\x00" not in joined  # (the common case, at once)
                and all(map(int.__ge__, _LIMITS.values(), map(len, texts)))):
            for name, limit in _LIMITS.items():
                object.__setattr__(self, name, _text(getattr(self, name), limit))
        if self.decision not in DECISIONS:
            raise ValueError(f"decision {self.decision!r}: expected one of "
                             f"{', '.join(sorted(DECISIONS))}")
        if isinstance(self.status, bool) or not isinstance(self.status, int) \
                or not 0 <= self.status <= 999:
            raise ValueError(f"status {self.status!r}: expected an HTTP status (0-999)")
        latency = float(self.latency_ms)
        if not math.isfinite(latency) or latency < 0:
            raise ValueError(f"latency_ms {self.latency_ms!r}: expected a finite number >= 0")
        object.__setattr__(self, "latency_ms", round(latency, 3))
        digest = self.input_digest
        if digest and (len(digest) != 64 or digest.strip("0123456789abcdef")):
            raise ValueError("input_digest: expected 64 lowercase hex digits (sha256) or ''")
        try:
            when = datetime.fromisoformat(self.ts)
        except (TypeError, ValueError):
            raise ValueError(f"ts {self.ts!r}: expected an ISO 8601 time") from None
        if when.tzinfo is None or len(self.ts) > 40:
            raise ValueError(f"ts {self.ts!r}: expected an ISO 8601 UTC time with its offset")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(AuditEntry))
#: The clipped and sanitized fields of an entry, in ``_LIMITS``' order.
_limited = operator.attrgetter(*_LIMITS)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(data).encode("utf-8")


def chain_hash(prev_hash: str, seq: int, entry: Mapping[str, Any]) -> str:
    """The hash of entry ``seq`` following ``prev_hash`` (``entry``: the entry's fields)."""
    status, latency = int(entry["status"]), float(entry["latency_ms"])
    try:
        text = _canonical_entry(seq, entry, status, latency)
    except TypeError:  # a value that is not a str (a row read back with a NULL)
        body = {name: entry[name] for name in _FIELDS}
        body["status"], body["latency_ms"] = status, latency
        text = canonical_json({"seq": seq, **body})
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + text).hexdigest()


#: The hashed text of an entry: its keys in canonical (sorted) order, each followed by a
#: ``str.format`` field: the strings first (``_STRINGS``' order), then seq, status, latency.
_HASHED = sorted((*_FIELDS, "seq"))
_NUMBERS = ("seq", "status", "latency_ms")
_STRINGS = tuple(key for key in _HASHED if key not in _NUMBERS)
#: The encoder's string escaping (``ensure_ascii=False``), in C where CPython has it.
_escape = json.encoder.encode_basestring
_TEXT = "{{" + ",".join(
    _escape(key) + ":{" + str(_STRINGS.index(key) if key in _STRINGS
                          else len(_STRINGS) + _NUMBERS.index(key)) + "}"
    for key in _HASHED) + "}}"
_strings = operator.itemgetter(*_STRINGS)


def _canonical_entry(seq: int, entry: Mapping[str, Any], status: int,
                     latency: float) -> bytes:
    """:func:`canonical_json` of an entry, written from a template: ~3 µs against ~10 for
    the encoder's sorted walk of a dict built for it (the audit log hashes every request).
    The same bytes: strings through the encoder's own escaping, numbers as it writes them.
    ``TypeError`` for a value that is not a str (or a ``seq`` that is not an int) or a
    latency that is not finite: the caller falls back to the encoder."""
    if type(seq) is not int or not math.isfinite(latency):
        raise TypeError("not a plain entry")
    return _TEXT.format(*map(_escape, _strings(entry)), int.__repr__(seq),
                        int.__repr__(status), float.__repr__(latency)).encode("utf-8")


class AuditLog:
    """Appends to the chain in ``engine``'s database (tables made by
    :func:`bastion.gateway.tables.prepare`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, entry: AuditEntry) -> int:
        """Append one entry and commit; its sequence number."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[int]:
        """Append entries in order, in one transaction; their sequence numbers.

        Serialized with every other appender of the same database, in this process and in
        others: SQLite by ``BEGIN IMMEDIATE`` (the file's write lock), PostgreSQL by a
        transaction-scoped advisory lock (released by COMMIT/ROLLBACK, so a killed process
        never leaves it held). The statements go straight to the driver over a pooled
        connection: SQLAlchemy's connection and transaction bookkeeping cost more than the
        commit itself (112 against 45 µs of CPU per SQLite append, measured)."""
        if not entries:
            return []
        with storage_errors(self.engine):
            raw = self.engine.raw_connection()
            try:
                return self._append(raw, entries)
            except BaseException:
                try:
                    raw.rollback()
                except Exception:
                    raw.invalidate()  # the connection is in an unknown state: drop it
                raise
            finally:
                raw.close()

    def _append(self, raw: Any, entries: Sequence[AuditEntry]) -> list[int]:
        driver: Any = getattr(raw, "driver_connection", None)
        if self.engine.dialect.name != "sqlite" and hasattr(driver, "pipeline"):
            # psycopg 3: the statements go in two round trips to the server (the lock and
            # the head; the rows, the new head and the commit) instead of six, plus the
            # pool's check-out ping (measured: 1.30 against 1.64 ms a one-entry commit).
            with driver.pipeline():
                return self._statements(raw, driver, entries)
        return self._statements(raw, None, entries)

    def _statements(self, raw: Any, pipelined: Any, entries: Sequence[AuditEntry]) -> list[int]:
        sql = _raw_sql(self.engine.dialect.paramstyle)
        sqlite = self.engine.dialect.name == "sqlite"
        cursor = raw.cursor()
        try:
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            else:
                cursor.execute(sql.lock, (_LOCK,))
            cursor.execute(sql.head)
            head = cursor.fetchone()
            if head is None:  # a new log, or a deleted head: never restart over old entries
                cursor.execute(sql.last)
                head = cursor.fetchone()
                has_head = False
            else:
                has_head = True
            seq, prev = (int(head[0]), str(head[1])) if head is not None else (0, GENESIS)
            first = seq + 1
            rows: list[tuple[Any, ...]] = []
            for entry in entries:
                seq += 1
                data = entry.to_dict()
                digest = chain_hash(prev, seq, data)
                rows.append((seq, *data.values(), prev, digest))
                prev = digest
            cursor.executemany(sql.insert, rows)
            cursor.execute(sql.set_head if has_head else sql.new_head, (seq, prev))
            if sqlite:
                cursor.execute("COMMIT")
            elif pipelined is not None:
                pipelined.commit()  # sent with the rows; the pipeline waits for its answer
            else:
                raw.commit()
        finally:
            cursor.close()
        return list(range(first, seq + 1))



_COLUMNS = ("seq", *_FIELDS, "prev_hash", "hash")


@dataclass(frozen=True)
class _Sql:
    insert: str
    head: str
    last: str
    set_head: str
    new_head: str
    lock: str


@functools.cache
def _raw_sql(paramstyle: str) -> _Sql:
    """The append statements in the driver's placeholder style (names are constants)."""
    mark = "?" if paramstyle == "qmark" else "%s"
    log, head = AuditRow.__tablename__, AuditHeadRow.__tablename__
    return _Sql(
        insert=(f"INSERT INTO {log} ({', '.join(_COLUMNS)}) "  # noqa: S608
                f"VALUES ({', '.join([mark] * len(_COLUMNS))})"),
        head=f"SELECT seq, hash FROM {head} WHERE id = 1",  # noqa: S608
        last=f"SELECT seq, hash FROM {log} ORDER BY seq DESC LIMIT 1",  # noqa: S608
        set_head=f"UPDATE {head} SET seq = {mark}, hash = {mark} WHERE id = 1",  # noqa: S608
        new_head=f"INSERT INTO {head} (id, seq, hash) VALUES (1, {mark}, {mark})",  # noqa: S608
        lock=(f"SELECT pg_advisory_xact_lock(hashtextextended({mark} || '/' || "
              "current_schema(), 0))"),
    )


# -- group commit ------------------------------------------------------------------------------


class AuditWriter:
    """Group commit: ``submit(entry)`` returns a future resolved with the entry's sequence
    number once its transaction has committed (or with the error that stopped it);
    ``write(entry)`` blocks until then. Entries that arrive while a commit runs go together
    in the next one, so the cost of a commit is shared by every request waiting on it.

    Whoever finds no commit running leads the next one: a request thread calling ``write``
    (no hand-off to another thread when the log is idle: that hand-off cost more than a
    SQLite commit), or the background thread, which serves ``submit`` and flushes on close.

    ``max_batch`` bounds one transaction; ``max_pending`` bounds memory: beyond it, submit
    fails with :class:`AuditUnavailable` (the gateway answers 503 rather than serve
    unaudited). Use as a context manager, or call :meth:`close`, which commits what is
    pending before it returns.
    """

    def __init__(self, log: AuditLog, *, max_batch: int = 256, max_pending: int = 10_000) -> None:
        if max_batch < 1 or max_pending < 1:
            raise ValueError("max_batch and max_pending must be at least 1")
        self.log = log
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._pending: deque[tuple[AuditEntry, Future[int]]] = deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # request threads waiting for their commit
        self._idle = threading.Condition(lock)  # the background thread, between batches
        self._closing = False
        self._leading = False  # a commit is running
        self._last: Future[int] | None = None  # the entry queued last
        self._thread = threading.Thread(target=self._run, name="bastion-audit-writer",
                                        daemon=True)
        self._thread.start()

    def _enqueue(self, entry: AuditEntry) -> Future[int]:
        future: Future[int] = Future()
        if self._closing:
            raise AuditUnavailable("the audit writer is closed")
        if len(self._pending) >= self.max_pending:
            raise AuditUnavailable(f"{self.max_pending} audit entries already wait to be "
                                   "written: the database is too slow or unreachable")
        self._pending.append((entry, future))
        self._last = future
        return future

    def submit(self, entry: AuditEntry) -> Future[int]:
        with self._cond:
            future = self._enqueue(entry)
            self._idle.notify()  # the background thread leads for submitted entries
        return future

    def write(self, entry: AuditEntry, timeout: float = 30.0) -> int:
        """Append ``entry`` and return its sequence number once committed (leading the
        commit when none runs)."""
        with self._cond:
            future = self._enqueue(entry)
        if not self._commit_until(future, timeout):
            raise AuditUnavailable(f"the audit entry was not committed within {timeout:g} s")
        return future.result()

    def enqueue(self, entry: AuditEntry) -> Future[int]:
        """Queue ``entry`` without committing it: the caller's next :meth:`flush` does (or
        a commit running then). For callers that commit a run of their own entries at
        once and await the futures elsewhere (the gateway's worker lanes and event loop)
        rather than block a thread on each."""
        with self._cond:
            return self._enqueue(entry)

    def flush(self, timeout: float = 30.0) -> None:
        """Commit every entry queued so far, in the calling thread: when a commit already
        runs, wait for it, then lead the next (rather than leave the rest to the background
        thread, whose hand-off costs each waiter a wake-up). Gives up after ``timeout``,
        leaving what is left to the background thread; failures go to the entries'
        futures."""
        with self._cond:
            last = self._last
        if last is not None and not self._commit_until(last, timeout):
            with self._cond:
                self._idle.notify()

    def _commit_until(self, future: Future[int], timeout: float) -> bool:
        """Lead commits (or wait for the running one) until ``future`` is resolved;
        entries are committed in the order queued, so every one queued before it is too.
        ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                batch = None
                while not future.done():
                    batch = self._lead()
                    if batch is not None:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            if batch is None:
                return True
            self._commit(batch)

    def _lead(self) -> list[tuple[AuditEntry, Future[int]]] | None:
        """Take the next batch if no commit runs (call with the condition held)."""
        if self._leading or not self._pending:
            return None
        self._leading = True
        count = min(len(self._pending), self.max_batch)
        return [self._pending.popleft() for _ in range(count)]

    def _commit(self, batch: list[tuple[AuditEntry, Future[int]]]) -> None:
        try:
            seqs = self.log.append_many([entry for entry, _ in batch])
        except Exception as exc:  # every waiter learns it; the writer keeps serving
            _log.error("audit log: %d entries not written: %s", len(batch), exc)
            for _, future in batch:
                _resolve(future, exc=exc)
        else:
            for (_, future), seq in zip(batch, seqs, strict=True):
                _resolve(future, seq=seq)
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()
                if self._pending or self._closing:
                    self._idle.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while (batch := self._lead()) is None:
                    if self._closing and not self._pending and not self._leading:
                        return
                    self._idle.wait()
            self._commit(batch)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop taking entries, commit those pending, stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            self._idle.notify()
        self._thread.join(timeout)
        with self._cond:
            left = list(self._pending)
            self._pending.clear()
        for _, future in left:
            _resolve(future, exc=AuditUnavailable("the audit writer closed before this entry "
                                                  "was written"))

    def __enter__(self) -> AuditWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _resolve(future: Future[int], *, seq: int | None = None,
             exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(seq)  # type: ignore[arg-type]
    except InvalidStateError:  # the waiter cancelled: the entry is written all the same
        pass


# -- verification and export -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify` found: ``ok``, how many entries it checked, and the first bad one."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    reason: str = ""
    last_seq: int = 0
    last_hash: str = GENESIS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(conn: Connection) -> Iterator[Any]:
    """Every row in seq order, a page at a time (keyset pagination: bounded memory)."""
    after = -1
    while True:
        page = conn.execute(select(*AuditRow.__table__.columns).where(AuditRow.seq > after)
                            .order_by(AuditRow.seq).limit(_PAGE)).mappings().all()
        yield from page
        if len(page) < _PAGE:
            return
        after = int(page[-1]["seq"])


def _snapshot(engine: Engine) -> Connection:
    """A connection reading one consistent snapshot (entries appended meanwhile by other
    processes are not half-seen): REPEATABLE READ on PostgreSQL; on SQLite, one read
    transaction in WAL mode is a snapshot already."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def verify(engine: Engine) -> ChainReport:
    """Recompute the chain; the first entry that was edited, deleted, inserted or moved."""
    count, expected, prev = 0, 1, GENESIS
    with storage_errors(engine), _snapshot(engine) as conn:
        head = conn.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)
                            .where(AuditHeadRow.id == 1)).first()
        for row in _rows(conn):
            seq = int(row["seq"])
            problem = _check_row(row, seq, expected, prev)
            if problem:
                return ChainReport(False, count, problem[0], problem[1], expected - 1, prev)
            count += 1
            expected, prev = seq + 1, str(row["hash"])
        last = expected - 1
        if head is None:
            if count:
                return ChainReport(False, count, last, "the log's head record is missing: "
                                   "it was deleted", last, prev)
            return ChainReport(True, 0)
        if int(head.seq) > last:
            return ChainReport(False, count, last + 1, f"entries {last + 1}..{head.seq} were "
                               f"deleted from the end (the head says the log ends at "
                               f"{head.seq})", last, prev)
        if int(head.seq) < last:
            return ChainReport(False, count, int(head.seq) + 1, f"entries after "
                               f"{head.seq} (the head) were added outside the gateway",
                               last, prev)
        if str(head.hash) != prev:
            return ChainReport(False, count, last, f"the head's hash does not match entry "
                               f"{last}: the head or the last entry was rewritten", last, prev)
    return ChainReport(True, count, None, "", last, prev)


def _check_row(row: Mapping[str, Any], seq: int, expected: int,
               prev: str) -> tuple[int, str] | None:
    if seq != expected:
        gap = f"entry {expected} is" if seq == expected + 1 else \
            f"entries {expected}..{seq - 1} are"
        return expected, f"{gap} missing: deleted, or renumbered"
    if row["prev_hash"] != prev:
        return seq, (f"entry {seq} does not follow entry {seq - 1}: an entry was edited, "
                     "deleted, inserted or moved at this point")
    try:
        recomputed = chain_hash(prev, seq, row)
    except (TypeError, ValueError) as exc:
        return seq, f"entry {seq} cannot be read: {exc}"
    if recomputed != row["hash"]:
        return seq, f"entry {seq} was edited: its content does not match its hash"
    return None


def export_jsonl(engine: Engine, stream: TextIO) -> int:
    """Write every entry as one JSON object per line (with seq, prev_hash and hash, so a
    SIEM can re-verify); the number written. One snapshot: a consistent prefix of the log."""
    count = 0
    with storage_errors(engine), _snapshot(engine) as conn:
        for row in _rows(conn):
            record = {"seq": int(row["seq"]), **{name: row[name] for name in _FIELDS},
                      "prev_hash": row["prev_hash"], "hash": row["hash"]}
            stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count
