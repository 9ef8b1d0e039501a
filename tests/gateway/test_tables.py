"""The gateway's tables: created once (idempotent), versioned, UTC on both backends; the
per-request reads see every commit, over one connection per thread."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from tests.gateway.conftest import Db

import bastion.db as db_module
from bastion.db import StorageError, fetch_one
from bastion.gateway.tables import SCHEMA_VERSION, ApiKeyRow, prepare


def test_prepare_is_idempotent_and_checks_the_version(db: Db) -> None:
    prepare(db.engine)
    prepare(db.engine)
    with db.engine.connect() as conn:
        found = conn.execute(text("SELECT value FROM bastion_gateway_meta "
                                  "WHERE key = 'schema'")).scalars().all()
    assert found == [SCHEMA_VERSION]
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE bastion_gateway_meta SET value = '999'"))
    with pytest.raises(StorageError, match="version 999"):
        prepare(db.engine)


def test_times_are_utc_on_every_backend(engine: Engine) -> None:
    paris = timezone(timedelta(hours=2))
    when = datetime(2026, 6, 1, 14, 0, tzinfo=paris)
    with engine.begin() as conn:
        conn.execute(insert(ApiKeyRow).values(
            key_id="a" * 12, hash="x", principal="p", groups=[], created_at=when,
            expires_at=None, revoked_at=None))
    with engine.connect() as conn:
        stored = conn.execute(select(ApiKeyRow.created_at)).scalar_one()
    assert stored == when
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive"), engine.begin() as conn:
        conn.execute(insert(ApiKeyRow).values(
            key_id="b" * 12, hash="x", principal="p", groups=[],
            created_at=datetime(2026, 6, 1), expires_at=None, revoked_at=None))
    assert datetime.now(UTC) > stored


def _key_row(engine: Engine, key_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(ApiKeyRow).values(
            key_id=key_id, hash="x", principal="p", groups=[], created_at=datetime.now(UTC),
            expires_at=None, revoked_at=None))


_READ = "SELECT principal FROM bastion_api_keys WHERE key_id = ?"


def test_per_request_reads_see_every_commit_and_keep_one_connection(engine: Engine) -> None:
    prepare(engine)
    assert fetch_one(engine, _READ, ("c" * 12,)) is None  # opens this thread's reader
    kept = db_module._reader(engine)
    assert kept[1] is False  # the same connection, not a new one
    _key_row(engine, "c" * 12)  # committed elsewhere, after the reader opened
    assert fetch_one(engine, _READ, ("c" * 12,)) == ("p",)  # autocommit: no stale snapshot
    assert db_module._reader(engine) == kept
    engine.dispose()  # the engine's connections go, this thread's reader with them
    conn, fresh = db_module._reader(engine)
    assert fresh is True
    assert conn is not kept[0]


def test_a_reader_the_server_dropped_is_replaced_once(db: Db) -> None:
    if db.backend != "postgresql":
        pytest.skip("a server-side disconnect is PostgreSQL's")
    engine = db.engine
    prepare(engine)
    _key_row(engine, "d" * 12)
    assert fetch_one(engine, _READ, ("d" * 12,)) == ("p",)
    conn, _ = db_module._reader(engine)
    pid = conn.info.backend_pid
    with engine.connect() as admin:  # as a server restart would
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert fetch_one(engine, _READ, ("d" * 12,)) == ("p",)  # retried on a new connection
    assert db_module._reader(engine)[0].info.backend_pid != pid
    with pytest.raises(StorageError, match="bastion_no_such_table"):  # not retried forever
        fetch_one(engine, "SELECT 1 FROM bastion_no_such_table WHERE 1 = ?", (1,))
