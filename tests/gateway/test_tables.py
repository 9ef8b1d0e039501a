"""The gateway's tables: created once (idempotent), versioned, UTC on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from tests.gateway.conftest import Db

from bastion.db import StorageError
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
