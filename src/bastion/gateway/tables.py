"""The gateway's tables: admitted models, API keys, grants and the audit log.

Typed SQLAlchemy 2 ORM declarations on :class:`bastion.db.Base`, every name prefixed
``bastion_`` so the gateway can share a database with anything else. The modules that use
them go through SQLAlchemy Core statements built from these classes (one round trip per
lookup on the request path, no session or identity map to pay for).

Every lookup the gateway makes on a request has an index: the key row by ``key_id`` (the
primary key), grants by ``(subject, model)``, the model by ``(name, version)``; the audit
log's ``seq`` is its primary key, so two writers can never both commit the same number.

There is no migration framework: :func:`prepare` creates missing tables and records
:data:`SCHEMA_VERSION` in ``bastion_gateway_meta``; a database written by another version is
refused with a clear message rather than misread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from bastion.db import Base, StorageError, exclusive, redact, storage_errors

#: Version of the tables below; bump it (and say how to migrate) when they change.
SCHEMA_VERSION = "1"
#: Bounds on identifiers, enforced by the modules before a row is written.
NAME_MAX = 128
VERSION_MAX = 64
SUBJECT_MAX = 160


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zone, so the value is stored as
    naive UTC and made aware again when read. Code never sees a naive datetime.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the gateway stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ModelRow(Base):
    """One admitted model version: where it is, what it was when admitted, how to load it."""

    __tablename__ = "bastion_models"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_bastion_models_name_version"),
        Index("ix_bastion_models_name_status", "name", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    version: Mapped[str] = mapped_column(String(VERSION_MAX))
    path: Mapped[str] = mapped_column(Text)
    #: ``sha256:<hex>``: of the file, or of the folder's sorted (path, size, sha256) list.
    digest: Mapped[str] = mapped_column(String(80))
    #: Every file of the model at admission: ``[[relpath, size, sha256hex], ...]``.
    files: Mapped[list[Any]] = mapped_column(JSON)
    loader: Mapped[str] = mapped_column(String(32))
    factory: Mapped[str | None] = mapped_column(String(256))
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON)
    scan_summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    signer: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # "admitted" | "retired"
    admitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    admitted_by: Mapped[str] = mapped_column(String(NAME_MAX))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKeyRow(Base):
    """An API key: only its argon2id hash is kept; ``key_id`` is the public lookup prefix."""

    __tablename__ = "bastion_api_keys"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    hash: Mapped[str] = mapped_column(String(256))
    principal: Mapped[str] = mapped_column(String(NAME_MAX), index=True)
    groups: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GrantRow(Base):
    """One permission on one model (or ``*``) for one subject (``user:NAME``, ``group:NAME``)."""

    __tablename__ = "bastion_grants"
    __table_args__ = (
        UniqueConstraint("subject", "model", "permission", name="uq_bastion_grants"),
        Index("ix_bastion_grants_subject_model", "subject", "model"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    model: Mapped[str] = mapped_column(String(NAME_MAX))
    permission: Mapped[str] = mapped_column(String(16))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    granted_by: Mapped[str] = mapped_column(String(NAME_MAX))


class AuditRow(Base):
    """One audited request, chained to the one before by ``prev_hash``."""

    __tablename__ = "bastion_audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, hashed exactly as stored
    principal: Mapped[str] = mapped_column(String(256))
    model: Mapped[str] = mapped_column(String(NAME_MAX))
    version: Mapped[str] = mapped_column(String(VERSION_MAX))
    permission: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(512))
    status: Mapped[int] = mapped_column(Integer)
    input_digest: Mapped[str] = mapped_column(String(64))
    output_summary: Mapped[str] = mapped_column(String(512))
    latency_ms: Mapped[float] = mapped_column(Float)
    client: Mapped[str] = mapped_column(String(128))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The last committed ``(seq, hash)``, written in the same transaction as the rows.

    The chain alone cannot show that entries were cut off its end; the head can (unless the
    head is rewritten too, which an exported copy then shows). Appends also take the next
    number from it, so a gap left by a deletion is never papered over."""

    __tablename__ = "bastion_audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class MetaRow(Base):
    """Key/value facts about the gateway's tables (the schema version)."""

    __tablename__ = "bastion_gateway_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


_TABLES = [ModelRow.__table__, ApiKeyRow.__table__, GrantRow.__table__, AuditRow.__table__,
           AuditHeadRow.__table__, MetaRow.__table__]


def prepare(engine: Engine) -> None:
    """Create the gateway's tables if missing and check the schema version (idempotent, and
    safe when several processes start at once: creation runs under an exclusive lock)."""
    with storage_errors(engine), exclusive(engine, "bastion.gateway.schema") as conn:
        Base.metadata.create_all(conn, tables=_TABLES)  # type: ignore[arg-type]
        found = conn.execute(select(MetaRow.value).where(MetaRow.key == "schema")).scalar()
        if found is None:
            conn.execute(insert(MetaRow).values(key="schema", value=SCHEMA_VERSION))
        elif found != SCHEMA_VERSION:
            raise StorageError(f"{redact(str(engine.url))}: gateway tables are version "
                               f"{found}, this Bastion reads version {SCHEMA_VERSION}")


def open_db(url: str | None = None, *, schema: str | None = None) -> Engine:
    """An engine on ``url`` (default: :func:`bastion.db.default_url`) with the gateway's
    tables ready."""
    from bastion.db import connect

    engine = connect(url, schema=schema)
    try:
        prepare(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine
