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
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import QueuePool

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
    process being killed (``kill -9``), which is what the audit log promises. SQLAlchemy, not
    pysqlite, says when a SQLite transaction begins (the documented pysqlite recipe): pysqlite
    would begin one only before the first write, so a read-then-write transaction could see
    another process's commit in between; :func:`exclusive` begins with ``BEGIN IMMEDIATE``.
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
            folder = Path(parsed.database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of {redact(url)}: "
                                   f"{exc.strerror or exc}") from None
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            # Connections are kept, not opened per checkout: one beyond the pool would be
            # closed on return, and opening one (with its pragmas) costs more than a query.
            kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size)
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
        event.listen(engine, "begin", _sqlite_begin)
    elif schema:
        _ensure_schema(engine, schema)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # no implicit BEGIN: _sqlite_begin emits it
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000",
                   "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


#: Execution option that makes a SQLite transaction begin with ``BEGIN IMMEDIATE``.
_IMMEDIATE = "bastion_sqlite_immediate"


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[Connection]:
    """A write transaction serialized with every other one taken under ``name``, across
    threads and processes: read-modify-write (next audit sequence number, next model version)
    is then safe with several gateway processes on one database.

    SQLite: ``BEGIN IMMEDIATE`` takes the file's write lock up front (waiting up to the busy
    timeout), so every writer of the file is serialized whatever ``name``. PostgreSQL: a
    transaction-scoped advisory lock keyed by ``name`` and the current schema (tenants and
    test schemas never wait on each other), released by COMMIT or ROLLBACK, so a killed
    process never leaves it held. Commits on normal exit, rolls back on an exception.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.execution_options(**{_IMMEDIATE: True})  # this connection only
            with conn.begin():
                yield conn
        return
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended("
                          ":name || '/' || current_schema(), 0))"), {"name": name})
        yield conn


@contextmanager
def storage_errors(engine: Engine, what: str = "database") -> Iterator[None]:
    """Turn a database failure (unreachable, locked, missing table) into :class:`StorageError`
    naming the database (as ``what``), never a driver traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    dbapi = getattr(engine.dialect, "loaded_dbapi", None)
    # Hot paths use the driver directly: its own errors are storage errors too.
    errors: tuple[type[BaseException], ...] = (
        (SQLAlchemyError, dbapi.Error) if dbapi is not None else (SQLAlchemyError,))
    try:
        yield
    except errors as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = detail[0] if detail else type(exc).__name__
        raise StorageError(f"{what} {redact(str(engine.url))}: {reason}") from None


def fetch_one(engine: Engine, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One row of a constant query (``?`` placeholders) straight from the driver.

    For per-request reads (an API key's row), over a connection each thread keeps for
    itself, in autocommit (every read sees the last commit):

    - SQLite: SQLAlchemy's connection and transaction bookkeeping cost ten times the query
      (52 µs against 5 µs measured), and even its pool's check-out and return cost three
      times the query (9.7 against 2.9 µs);
    - PostgreSQL: a pooled read is four round trips to the server (the pool's pre-ping,
      ``BEGIN``, the query, the ``ROLLBACK`` on return), each costing the server CPU too;
      here it is one. A kept connection the server dropped (a restart) is replaced and the
      read tried once more, as the pre-ping would have.

    In-memory SQLite reads go through the pool (a second connection to ``:memory:`` is
    another database). Values come back as the driver gives them (see :func:`as_utc`,
    :func:`as_json`)."""
    if engine.dialect.name == "sqlite" and not isinstance(engine.pool, QueuePool):
        return _pooled_fetch(engine, sql, params)
    if engine.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    for attempt in (1, 2):
        reader, fresh = _reader(engine)
        try:
            cursor = reader.execute(sql, params)
            row = cursor.fetchone()
        except BaseException as exc:
            lost = _disconnected(engine, reader, exc)
            _drop_reader(engine)  # in an unknown state: the next read opens another
            if attempt == 1 and not fresh and lost:
                continue
            with storage_errors(engine):
                raise
        return None if row is None else tuple(row)
    raise AssertionError("unreachable")  # pragma: no cover


def _pooled_fetch(engine: Engine, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    with storage_errors(engine):
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, params)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()
    return None if row is None else tuple(row)


def _disconnected(engine: Engine, conn: Any, exc: BaseException) -> bool:
    """``exc`` says ``conn`` was closed by the server (not a bad query or a timeout)."""
    dbapi = getattr(engine.dialect, "loaded_dbapi", None)
    if dbapi is None or not isinstance(exc, dbapi.Error):
        return False
    return bool(engine.dialect.is_disconnect(exc, conn, None))


#: Each thread's own connection to each engine (see :func:`fetch_one`).
_readers = threading.local()


class _Reader:
    """A thread's kept connection, closed when this is collected: its thread ended, or its
    engine was collected or disposed of (the driver warns about a connection never
    closed)."""

    __slots__ = ("__weakref__", "conn", "generation")

    def __init__(self, conn: Any, generation: int) -> None:
        self.conn = conn
        self.generation = generation  # the engine's count of disposals when opened
        weakref.finalize(self, _close_quietly, conn)


def _close_quietly(conn: Any) -> None:
    with suppress(Exception):
        conn.close()


def _reader(engine: Engine) -> tuple[Any, bool]:
    """This thread's connection to ``engine`` (opened with the engine's settings on first
    use, then out of its pool), and whether it was opened just now."""
    readers: weakref.WeakKeyDictionary[Engine, _Reader] | None = getattr(
        _readers, "by_engine", None)
    if readers is None:
        readers = _readers.by_engine = weakref.WeakKeyDictionary()
    generation = getattr(engine, "_bastion_disposals", 0)
    kept = readers.get(engine)
    if kept is not None:
        if kept.generation == generation:
            return kept.conn, False
        _drop_reader(engine)  # the engine was disposed of since: so are its connections
    with storage_errors(engine):
        fairy = engine.raw_connection()
        conn: Any = fairy.dbapi_connection
        fairy.detach()  # out of the pool's count: the pool opens another when it needs one
        if engine.dialect.name != "sqlite":
            conn.rollback()  # the pool's pre-ping may have begun a transaction
            conn.autocommit = True
    if not hasattr(engine, "_bastion_disposals"):  # once per engine
        engine._bastion_disposals = 0  # type: ignore[attr-defined]
        event.listen(engine, "engine_disposed", _disposed)
    readers[engine] = _Reader(conn, generation)
    return conn, True


def _drop_reader(engine: Engine) -> None:
    readers = getattr(_readers, "by_engine", None)
    kept = readers.pop(engine, None) if readers is not None else None
    if kept is not None:
        _close_quietly(kept.conn)


def _disposed(engine: Engine) -> None:
    """``engine.dispose()``: this thread's reader is closed now; other threads' readers
    when they next read (they open new ones) or end."""
    engine._bastion_disposals += 1  # type: ignore[attr-defined]
    _drop_reader(engine)


def as_utc(value: Any) -> Any:
    """A driver's datetime (PostgreSQL: aware) or SQLite's stored text, as aware UTC."""
    from datetime import UTC, datetime

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def as_json(value: Any) -> Any:
    """A JSON column as the driver gives it (PostgreSQL: decoded; SQLite: text)."""
    if isinstance(value, str | bytes):
        import json

        return json.loads(value)
    return value


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
