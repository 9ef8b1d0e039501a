"""The scan result cache, stored through :mod:`bastion.db` (SQLite by default, PostgreSQL by
URL): raw findings by content, and a stat index so unchanged files are not hashed again.

Two tables (and a one-row meta table for the layout version):

``bastion_scan_results``
    one file content's raw findings (before the policy) with its path taken out, keyed by
    :func:`bastion.scale.keys.result_key` and a name column ('' when the result holds for any
    file name; see :mod:`bastion.scale.work`). The same bytes under another path get the
    same findings with the new path.
``bastion_scan_files``
    absolute path → the stat signature (size, mtime, ctime, inode, device) it had when it was
    hashed, its digest, and the analyzers that claimed it: a file whose stat is unchanged is
    neither read nor hashed again.

Each batch of results is one committed transaction, written as the batch comes back: a scan
that is killed keeps everything it had finished. Rows are only ever upserted (sorted, so
concurrent scans sharing a PostgreSQL cache take row locks in one order); entries of old
scanner versions are simply never matched again.

SQLAlchemy is imported here, so only a scan with ``--cache`` pays for it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, Integer, String, Text, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from bastion.db import Base, StorageError, connect, redact, storage_errors

#: Layout of the cache tables; a database holding another layout is refused, not mixed with.
LAYOUT = "1"
#: Keys per query (SQLite's default limit on bound parameters is 32,766; stay far below).
_CHUNK = 500


class ScanMeta(Base):
    __tablename__ = "bastion_scan_meta"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ScanFile(Base):
    """The stat index: an unchanged file keeps its digest and claimants."""

    __tablename__ = "bastion_scan_files"

    path_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the path
    path: Mapped[str] = mapped_column(Text)  # for people reading the table
    stat: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64))
    analyzers: Mapped[str] = mapped_column(String(64))  # registry digest the claims are for
    claimants: Mapped[str] = mapped_column(Text)
    seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScanResult(Base):
    """One content's raw findings, path taken out."""

    __tablename__ = "bastion_scan_results"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text, primary_key=True)  # '' = any file name
    scanner: Mapped[str] = mapped_column(String(200), index=True)
    payload: Mapped[str] = mapped_column(Text)
    findings: Mapped[int] = mapped_column(Integer)
    stored: Mapped[datetime] = mapped_column(DateTime(timezone=True))


_TABLES = [Base.metadata.tables[t.__tablename__] for t in (ScanMeta, ScanFile, ScanResult)]


@dataclass(frozen=True, slots=True)
class StatRow:
    path: str  # absolute
    stat: str
    digest: str
    registry: str
    claimants: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResultRow:
    key: str
    name: str
    scanner: str
    payload: str
    findings: int


def path_key(path: str) -> str:
    """Paths may hold bytes that are not UTF-8 (kept as surrogates): key them by their bytes."""
    return hashlib.sha256(os.fsencode(path)).hexdigest()


def _readable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class ResultCache:
    """The cache at one database URL. Every failure raises :class:`StorageError`."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.engine: Engine = connect(url, schema=schema, pool_size=2)
        with self._errors():
            self._create()

    def _errors(self) -> AbstractContextManager[None]:
        return storage_errors(self.engine, "result cache")

    def _create(self) -> None:
        try:
            Base.metadata.create_all(self.engine, tables=_TABLES)
        except SQLAlchemyError:  # another process created them at the same moment
            Base.metadata.create_all(self.engine, tables=_TABLES)
        with self.engine.begin() as conn:
            layout = conn.scalar(select(ScanMeta.value).where(ScanMeta.name == "layout"))
            if layout is None:
                self._upsert(conn, ScanMeta.__table__, [{"name": "layout", "value": LAYOUT}],
                             ["name"], ["value"])
            elif layout != LAYOUT:
                raise StorageError(
                    f"result cache {redact(self.url)} holds layout {layout}, this Bastion "
                    f"writes {LAYOUT}: use another database or drop the bastion_scan_* tables")

    @staticmethod
    def _upsert(conn: Any, table: Any, rows: list[dict[str, Any]], index: list[str],
                update: list[str]) -> None:
        stmt: Any
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            stmt = postgresql.insert(table)
        else:
            from sqlalchemy.dialects import sqlite

            stmt = sqlite.insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=index,
                                          set_={c: stmt.excluded[c] for c in update})
        conn.execute(stmt, rows)

    # -- reading

    def stat_lookup(self, paths: Sequence[str]) -> dict[str, StatRow]:
        """The stat index rows of these absolute paths (those it has)."""
        by_key = {path_key(p): p for p in paths}
        out: dict[str, StatRow] = {}
        with self._errors(), self.engine.connect() as conn:
            for chunk in _chunks(list(by_key)):
                rows = conn.execute(select(ScanFile.path_key, ScanFile.stat, ScanFile.digest,
                                           ScanFile.analyzers, ScanFile.claimants)
                                    .where(ScanFile.path_key.in_(chunk)))
                for key, stat, digest, registry, claimants in rows:
                    path = by_key[key]
                    names = tuple(claimants.split(",")) if claimants else ()
                    out[path] = StatRow(path, stat, digest, registry, names)
        return out

    def result_lookup(self, keys: Sequence[str]) -> dict[tuple[str, str], str]:
        """Payloads by (key, name) for these keys."""
        out: dict[tuple[str, str], str] = {}
        with self._errors(), self.engine.connect() as conn:
            for chunk in _chunks(sorted(set(keys))):
                rows = conn.execute(select(ScanResult.key, ScanResult.name, ScanResult.payload)
                                    .where(ScanResult.key.in_(chunk)))
                for key, name, payload in rows:
                    out[(key, name)] = payload
        return out

    def counts(self) -> tuple[int, int]:
        """(files in the stat index, cached results)."""
        with self._errors(), self.engine.connect() as conn:
            files = conn.scalar(select(func.count()).select_from(ScanFile)) or 0
            results = conn.scalar(select(func.count()).select_from(ScanResult)) or 0
        return files, results

    # -- writing

    def write(self, stats: Sequence[StatRow], results: Sequence[ResultRow]) -> None:
        """Store a batch's stat rows and results in one committed transaction."""
        now = datetime.now(UTC)
        files = {path_key(r.path): {
            "path_key": path_key(r.path), "path": _readable(r.path), "stat": r.stat,
            "digest": r.digest, "analyzers": r.registry, "claimants": ",".join(r.claimants),
            "seen": now} for r in stats}
        found = {(r.key, r.name): {
            "key": r.key, "name": r.name, "scanner": r.scanner, "payload": r.payload,
            "findings": r.findings, "stored": now} for r in results}
        with self._errors(), self.engine.begin() as conn:
            if files:
                self._upsert(conn, ScanFile.__table__, [files[k] for k in sorted(files)],
                             ["path_key"], ["path", "stat", "digest", "analyzers", "claimants",
                                            "seen"])
            if found:
                self._upsert(conn, ScanResult.__table__, [found[k] for k in sorted(found)],
                             ["key", "name"], ["scanner", "payload", "findings", "stored"])

    def close(self) -> None:
        self.engine.dispose()


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def open_cache(url: str, *, schema: str | None = None) -> ResultCache:
    """The cache at ``url``; raises :class:`StorageError` when it cannot be used."""
    return ResultCache(url, schema=schema)
