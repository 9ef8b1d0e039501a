"""One storage layer for everything Bastion keeps: SQLite by default, PostgreSQL by URL.

The gateway (registry, keys, grants, audit log) and the scan result cache share it. Each
subsystem declares its tables on :class:`Base` and calls :func:`create_tables` once; there is
no migration framework yet (schema version is checked by each subsystem).

URLs: ``sqlite:///path/to.db`` (the default, under ``$BASTION_HOME``, ``~/.bastion``),
``postgresql://user@host/db`` (driven by psycopg 3). ``schema=`` puts every table in one
PostgreSQL schema (created if missing), so tests and tenants never collide.

SQLAlchemy is imported here, so only code that stores something pays for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase

#: Environment variable naming the database URL for every command that stores state.
URL_ENV = "BASTION_DB_URL"


class Base(DeclarativeBase):
    """Declarative base of every Bastion table."""


class StorageError(RuntimeError):
    """The database cannot be reached or used; the message says which and why."""


def home() -> Path:
    """Where Bastion keeps local state: ``$BASTION_HOME`` or ``~/.bastion``."""
    return Path(os.environ.get("BASTION_HOME") or Path.home() / ".bastion")


def default_url() -> str:
    """``$BASTION_DB_URL``, else a SQLite file under :func:`home`."""
    return os.environ.get(URL_ENV) or f"sqlite:///{home() / 'bastion.db'}"


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def connect(url: str | None = None, *, schema: str | None = None, pool_size: int = 10) -> Engine:
    """An engine for ``url`` (default :func:`default_url`), tuned for small concurrent writes.

    SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
    process being killed (``kill -9``), which is what the audit log promises.
    """
    url = url or default_url()
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StorageError(f"not a database URL: {redact(url)!r} ({exc})") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        if schema:
            raise StorageError("schemas are a PostgreSQL feature; SQLite keeps one per file")
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        if schema:
            if not schema.replace("_", "").isalnum():
                raise StorageError(f"schema name {schema!r}: use letters, digits and _ only")
            kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
    else:
        raise StorageError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")
    engine = create_engine(parsed, **kwargs)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif schema:
        _ensure_schema(engine, schema)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _ensure_schema(engine: Engine, schema: str) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except Exception as exc:
        raise StorageError(f"cannot use {redact(str(engine.url))}: {exc}") from None


def create_tables(engine: Engine) -> None:
    """Create every table declared on :class:`Base` that does not exist yet."""
    try:
        Base.metadata.create_all(engine)
    except Exception as exc:
        raise StorageError(f"cannot create tables in {redact(str(engine.url))}: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def drop_schema(engine: Engine, schema: str) -> None:
    """Drop a PostgreSQL schema and everything in it (tests clean up with this)."""
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
