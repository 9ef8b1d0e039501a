"""The audit log: one hash chain whatever the number of writers (threads or OS processes),
every tampering with the rows detected, and nothing committed lost to ``kill -9``."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from tests.gateway.conftest import Db

from bastion.db import StorageError
from bastion.gateway import audit
from bastion.gateway.audit import AuditEntry, AuditLog, AuditUnavailable, AuditWriter
from bastion.gateway.tables import prepare

CHILD = Path(__file__).with_name("audit_child.py")


def _entry(i: int = 0, **changes: object) -> AuditEntry:
    fields: dict[str, object] = {
        "principal": "alice", "model": "iris", "version": "1", "permission": "predict",
        "decision": "allow", "reason": f"request {i}", "status": 200,
        "input_digest": audit.digest_input(f"body {i}".encode()),
        "output_summary": "label", "latency_ms": 1.25, "client": "127.0.0.1", **changes}
    return AuditEntry(**fields)  # type: ignore[arg-type]


def _seqs(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(s) for s in conn.execute(text("SELECT seq FROM bastion_audit_log "
                                                  "ORDER BY seq")).scalars()]


def _sql(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_append_verify_and_export(engine: Engine) -> None:
    log = AuditLog(engine)
    assert audit.verify(engine) == audit.ChainReport(True, 0)
    assert [log.append(_entry(i)) for i in range(3)] == [1, 2, 3]
    assert log.append_many([_entry(i) for i in range(3, 6)]) == [4, 5, 6]
    report = audit.verify(engine)
    assert report.ok
    assert report.entries == 6
    assert report.last_seq == 6
    assert report.first_bad_seq is None

    out = io.StringIO()
    assert audit.export_jsonl(engine, out) == 6
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev_hash"] == audit.GENESIS
    assert records[2]["reason"] == "request 2"
    assert records[2]["latency_ms"] == 1.25
    # A SIEM can re-verify the export on its own: the chain is in the lines.
    prev = audit.GENESIS
    for record in records:
        assert record["prev_hash"] == prev
        prev = audit.chain_hash(prev, record["seq"], record)
        assert prev == record["hash"]
    assert prev == report.last_hash


def _forge_tail(engine: Engine) -> None:
    """A well-chained entry 11 inserted behind the gateway's back (head left alone)."""
    with engine.begin() as conn:
        last = conn.execute(text("SELECT hash FROM bastion_audit_log WHERE seq = 10")).scalar()
        data = _entry(99).to_dict()
        row = {**data, "seq": 11, "prev_hash": last,
               "hash": audit.chain_hash(str(last), 11, data)}
        conn.execute(text(f"INSERT INTO bastion_audit_log ({', '.join(row)}) "
                          f"VALUES ({', '.join(':' + k for k in row)})"), row)


def _edit_and_rehash_5(engine: Engine) -> None:
    """Edit entry 5 *and* recompute its hash: only the link from entry 6 can tell."""
    with engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM bastion_audit_log WHERE seq = 5")).mappings().one()
        digest = audit.chain_hash(row["prev_hash"], 5, {**row, "decision": "deny"})
        conn.execute(text("UPDATE bastion_audit_log SET decision = 'deny', hash = :h "
                          "WHERE seq = 5"), {"h": digest})


TAMPERING: dict[str, tuple[Any, int, str]] = {
    "edited": (["UPDATE bastion_audit_log SET reason = 'nothing to see' WHERE seq = 5"], 5,
               "entry 5 was edited"),
    "edited number": (["UPDATE bastion_audit_log SET status = 403 WHERE seq = 7"], 7,
                      "entry 7 was edited"),
    "edited and rehashed": (_edit_and_rehash_5, 6, "entry 6 does not follow entry 5"),
    "deleted": (["DELETE FROM bastion_audit_log WHERE seq = 4"], 4, "entry 4 is missing"),
    "deleted first": (["DELETE FROM bastion_audit_log WHERE seq IN (1, 2)"], 1,
                      "entries 1..2 are missing"),
    "deleted last": (["DELETE FROM bastion_audit_log WHERE seq >= 9"], 9,
                     "entries 9..10 were deleted from the end"),
    "reordered": (["UPDATE bastion_audit_log SET seq = -1 WHERE seq = 3",
                   "UPDATE bastion_audit_log SET seq = 3 WHERE seq = 4",
                   "UPDATE bastion_audit_log SET seq = 4 WHERE seq = -1"], 3,
                  "entry 3 does not follow entry 2"),
    "renumbered": (["UPDATE bastion_audit_log SET seq = 20 WHERE seq = 10",
                    "UPDATE bastion_audit_head SET seq = 20"], 10,
                   "entries 10..19 are missing"),
    "inserted": (_forge_tail, 11, "added outside the gateway"),
    "head deleted": (["DELETE FROM bastion_audit_head"], 10, "head record is missing"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampering_is_detected(engine: Engine, case: str) -> None:
    AuditLog(engine).append_many([_entry(i) for i in range(1, 11)])
    assert audit.verify(engine).ok
    tamper, first_bad, reason = TAMPERING[case]
    if callable(tamper):
        tamper(engine)
    else:
        _sql(engine, *tamper)
    report = audit.verify(engine)
    assert not report.ok
    assert report.first_bad_seq == first_bad, report
    assert reason in report.reason, report


def test_appends_continue_from_the_head_after_a_deletion(engine: Engine) -> None:
    log = AuditLog(engine)
    log.append_many([_entry(i) for i in range(5)])
    _sql(engine, "DELETE FROM bastion_audit_log WHERE seq = 5")
    assert log.append(_entry(6)) == 6  # never reuses 5 to paper over the gap
    assert audit.verify(engine).first_bad_seq == 5


def test_entries_are_bounded_and_sanitized() -> None:
    entry = _entry(principal="a\x00b", reason="x" * 5000, client="\ud800host")
    assert entry.principal == "a\ufffdb"
    assert len(entry.reason) == 512
    assert entry.client == "?host"
    assert _entry(latency_ms=1.23456).latency_ms == 1.235
    for bad in ({"decision": "maybe"}, {"status": 1000}, {"status": True},
                {"latency_ms": float("nan")}, {"latency_ms": -1}, {"input_digest": "XYZ"},
                {"ts": "yesterday"}, {"ts": "2026-01-01T00:00:00"}):
        with pytest.raises(ValueError, match="expected"):
            _entry(**bad)


def test_hostile_strings_are_written_and_verify(engine: Engine) -> None:
    log = AuditLog(engine)
    log.append(_entry(principal="\x00\x01\x7f", reason="é\u202e😀" * 200, client="\ud83d"))
    assert audit.verify(engine).ok


def test_writer_group_commit_from_threads(engine: Engine) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    with AuditWriter(AuditLog(engine)) as writer:
        def via_writer(tag: int) -> None:
            futures = [writer.submit(_entry(tag * 100 + i)) for i in range(25)]
            got = [f.result(timeout=60) for f in futures]
            with lock:
                seen.extend(got)

        def direct(tag: int) -> None:  # another writer in the same process
            log = AuditLog(engine)
            got = [log.append(_entry(tag * 100 + i)) for i in range(10)]
            with lock:
                seen.extend(got)

        threads = [threading.Thread(target=via_writer, args=(t,)) for t in range(8)]
        threads += [threading.Thread(target=direct, args=(t,)) for t in range(8, 12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert sorted(seen) == list(range(1, 241))
    report = audit.verify(engine)
    assert report.ok
    assert report.entries == 240


def test_writer_close_flushes_and_refuses_after(engine: Engine) -> None:
    writer = AuditWriter(AuditLog(engine))
    futures = [writer.submit(_entry(i)) for i in range(50)]
    writer.close()
    assert sorted(f.result(timeout=0) for f in futures) == list(range(1, 51))
    with pytest.raises(AuditUnavailable, match="closed"):
        writer.submit(_entry())
    bounded = AuditWriter(AuditLog(engine), max_pending=1)
    refused: AuditUnavailable | None = None
    try:
        # The writer may take the first entry at once; within a few, the bound is hit.
        for i in range(10_000):
            try:
                bounded.submit(_entry(i))
            except AuditUnavailable as exc:
                refused = exc
                break
    finally:
        bounded.close()
    assert refused is not None
    assert "already wait" in str(refused)
    assert audit.verify(engine).ok


def test_writer_reports_failures_and_recovers(engine: Engine) -> None:
    with AuditWriter(AuditLog(engine)) as writer:
        assert writer.submit(_entry()).result(timeout=30) == 1
        _sql(engine, "DROP TABLE bastion_audit_log")
        with pytest.raises(StorageError, match="database"):
            writer.submit(_entry()).result(timeout=30)
        prepare(engine)  # the table is back (empty): the same writer carries on
        _sql(engine, "DELETE FROM bastion_audit_head")
        assert writer.submit(_entry()).result(timeout=30) == 1
    assert audit.verify(engine).ok


def _child(db: Db, tag: str, count: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), db.url, db.schema or "", tag, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def _go(*children: subprocess.Popen[str]) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()


def test_two_processes_share_one_chain(db: Db) -> None:
    children = [_child(db, tag, 200) for tag in ("p1", "p2")]
    _go(*children)
    outputs = [child.communicate(timeout=180) for child in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    seqs = [{int(line) for line in out.split()} for out, _ in outputs]
    assert len(seqs[0]) == len(seqs[1]) == 200
    assert not seqs[0] & seqs[1]
    assert seqs[0] | seqs[1] == set(range(1, 401))
    report = audit.verify(db.engine)
    assert report.ok, report
    assert report.entries == 400


def test_kill_9_loses_nothing_committed(db: Db) -> None:
    child = _child(db, "victim", 0)
    assert child.stdout is not None
    _go(child)
    reported: list[int] = []
    deadline = time.monotonic() + 60
    while len(reported) < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    rest, err = child.communicate(timeout=30)
    reported.extend(int(line) for line in rest.split())
    assert child.returncode == -signal.SIGKILL
    assert len(reported) >= 300, err
    report = audit.verify(db.engine)
    assert report.ok, report
    present = set(_seqs(db.engine))
    assert set(reported) <= present  # every answered request is in the log
    assert present == set(range(1, report.last_seq + 1))
    # The log carries on after the crash, from where the chain ends.
    assert AuditLog(db.engine).append(_entry()) == report.last_seq + 1
    assert audit.verify(db.engine).ok


class _RecordingLog(AuditLog):
    """The real log, noting the thread of each commit; the first one can be held open (it
    waits for ``release`` before it writes) to test what happens while a commit runs."""

    def __init__(self, engine: Engine, *, hold_first: bool = False) -> None:
        super().__init__(engine)
        self.threads: list[str] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def append_many(self, entries: Any) -> list[int]:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) == 1 and not self.release.is_set():
            self.holding.set()
            assert self.release.wait(30), "the held commit was never released"
        return super().append_many(entries)


def test_writer_enqueue_waits_for_flush(engine: Engine) -> None:
    log = _RecordingLog(engine)
    with AuditWriter(log) as writer:
        futures = [writer.enqueue(_entry(i)) for i in range(3)]
        time.sleep(0.05)  # time for the background thread, were it (wrongly) told of them
        assert not any(f.done() for f in futures)
        assert writer.pending == 3
        assert _seqs(engine) == []
        assert log.threads == []
        writer.flush()
        # Committed in this thread, before flush returned.
        assert all(f.done() for f in futures)
        assert [f.result(timeout=0) for f in futures] == [1, 2, 3]
        assert log.threads == [threading.current_thread().name]
        assert writer.pending == 0
        assert _seqs(engine) == [1, 2, 3]
        writer.flush()  # nothing queued: no commit
        assert log.threads == [threading.current_thread().name]
    report = audit.verify(engine)
    assert report.ok, report
    assert report.entries == 3


def test_writer_flush_waits_for_a_running_commit(engine: Engine) -> None:
    # A worker lane's flush returns only once its entries are committed, even when another
    # thread's commit runs: its answers then need no later wake-up to learn it.
    log = _RecordingLog(engine, hold_first=True)
    with AuditWriter(log) as writer:
        first: list[int] = []
        leader = threading.Thread(target=lambda: first.append(writer.write(_entry(0))),
                                  name="leader")
        leader.start()
        assert log.holding.wait(30)  # the leader's commit runs (held open)
        future = writer.enqueue(_entry(1))
        flusher = threading.Thread(target=writer.flush, name="flusher")
        flusher.start()
        flusher.join(0.2)
        assert flusher.is_alive()  # waiting for the running commit
        assert not future.done()
        log.release.set()
        flusher.join(30)
        assert not flusher.is_alive()
        assert future.done()  # committed before flush returned
        assert future.result(timeout=0) == 2
        leader.join(30)
        assert first == [1]
    assert _seqs(engine) == [1, 2]
    report = audit.verify(engine)
    assert report.ok, report
    assert report.entries == 2


def test_writer_flush_commits_all_queued_in_batches(engine: Engine) -> None:
    log = _RecordingLog(engine)
    with AuditWriter(log, max_batch=2) as writer:
        futures = [writer.enqueue(_entry(i)) for i in range(5)]
        writer.flush()
        # Every entry queued before the flush is committed when it returns, in order.
        assert [f.result(timeout=0) for f in futures] == [1, 2, 3, 4, 5]
        assert len(log.threads) == 3  # batches of at most two
        assert log.threads[0] == threading.current_thread().name
        writer.flush()  # nothing queued since: no commit
        assert len(log.threads) == 3
    assert _seqs(engine) == [1, 2, 3, 4, 5]
    report = audit.verify(engine)
    assert report.ok, report
    assert report.entries == 5


# -- the hashed text, written from a template: the encoder's bytes, whatever the values -------

_ODD = ["", "plain", 'quote " and \\ backslash', "tab\tnew\nline\r", "\x01\x1f\x7f",
        "é ü 中文 🙂", "\u2028\u2029", "</script>", "{}[]:,", "x" * 600]


@pytest.mark.parametrize("seed", range(30))
def test_chain_hash_text_is_the_canonical_json(seed: int) -> None:
    import random

    rng = random.Random(seed)
    data = {name: rng.choice(_ODD) + "".join(chr(rng.randrange(1, 0x3000))
                                            for _ in range(rng.randrange(4)))
            for name in audit._FIELDS}
    data["status"] = rng.choice([0, 200, 429, 999])
    data["latency_ms"] = rng.choice([0.0, 1.25, 1e-07, 1e16, 123456.789, 5e-324, 0.1 + 0.2])
    seq = rng.choice([1, 2, 10**12])
    expected = audit.canonical_json({"seq": seq, **data})
    assert audit._canonical_entry(seq, data, data["status"], data["latency_ms"]) == expected
    prev = "ab" * 32
    import hashlib

    assert audit.chain_hash(prev, seq, data) == hashlib.sha256(
        prev.encode() + b"\n" + expected).hexdigest()


def test_chain_hash_of_a_row_with_a_null_falls_back() -> None:
    data = _entry().to_dict()
    data["reason"] = None  # a row read back from a tampered database
    import hashlib

    expected = hashlib.sha256(b"0" * 64 + b"\n" + audit.canonical_json(
        {"seq": 3, **data})).hexdigest()
    assert audit.chain_hash("0" * 64, 3, data) == expected
    with pytest.raises(ValueError, match="Out of range"):
        audit.chain_hash("0" * 64, 3, {**data, "latency_ms": float("nan")})


@pytest.mark.parametrize("text", [*_ODD, "nul\x00here", "\ud800 alone", "a" * 257, "ok"])
def test_entry_strings_are_clipped_and_sanitized_as_before(text: str) -> None:
    """The entry's quick check (ASCII, no NUL, within the limits) must let through only
    what the full sanitizing would leave as it is."""
    entry = _entry(principal=text, model=text, output_summary=text, client=text)
    for name in ("principal", "model", "output_summary", "client"):
        assert getattr(entry, name) == audit._text(text, audit._LIMITS[name])
    entry.to_dict()["principal"].encode("utf-8")  # always writable: no error
