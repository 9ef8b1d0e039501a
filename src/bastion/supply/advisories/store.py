"""The local advisory index: OSV records in SQLite, keyed by normalized package name.

``bastion db update`` imports a source into a fresh file beside the old one and swaps it in
atomically, so a concurrent audit sees the old database or the new one, never half of one.
Records are stored as compact JSON and parsed on demand; an audit of 500 packages is one
indexed query. Location: ``$BASTION_DB``, else ``$XDG_CACHE_HOME/bastion`` or
``~/.cache/bastion``. When no database exists yet, the snapshot shipped inside the package
is imported first (in memory when the cache folder is not writable), so the very first
audit works offline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bastion.errors import InputError
from bastion.supply.advisories.osv import Advisory, parse_record, pypi_names
from bastion.supply.advisories.sources import Entry, iter_bundle, read_bundle

DB_ENV = "BASTION_DB"
DB_FORMAT = "bastion-advisories/1"
BUNDLE_NAME = "pypa-advisory-db.json.xz"
#: A database whose newest record is older than this gets a warning in every report.
STALE_DAYS = 30
_CHUNK = 500
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE advisory (id TEXT PRIMARY KEY, modified TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE affects (name TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (name, id))
    WITHOUT ROWID;
"""


@dataclass(frozen=True)
class DbInfo:
    """What ``bastion db status`` shows and every report notes."""

    path: str
    source: str
    imported: str  # ISO time of the import
    date: str  # ISO date of the newest record (or the snapshot's stated date)
    count: int
    packages: int
    withdrawn: int
    errors: int
    embedded: bool

    def age_days(self, today: dt.date | None = None) -> int | None:
        try:
            then = dt.date.fromisoformat(self.date[:10])
        except ValueError:
            return None
        return ((today or dt.datetime.now(dt.UTC).date()) - then).days

    def stale(self, today: dt.date | None = None) -> bool:
        age = self.age_days(today)
        return age is None or age > STALE_DAYS


def default_db_path() -> Path:
    """``$BASTION_DB``, else the user cache folder (XDG layout)."""
    explicit = os.environ.get(DB_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "bastion" / "advisories.sqlite"


def embedded_bundle() -> Path:
    return Path(str(resources.files("bastion.supply") / "data" / BUNDLE_NAME))


class AdvisoryStore:
    """Read access to one advisory database; parsed records are cached per instance."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._parsed: dict[str, Advisory | None] = {}
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != DB_FORMAT:
            raise InputError(f"{path}: not a Bastion advisory database ({DB_FORMAT})",
                             hint="run `bastion db update` to rebuild it")
        self.info = DbInfo(path=path, source=meta.get("source", "?"),
                           imported=meta.get("imported", ""), date=meta.get("date", ""),
                           count=int(meta.get("count", 0)), packages=int(meta.get("packages", 0)),
                           withdrawn=int(meta.get("withdrawn", 0)),
                           errors=int(meta.get("errors", 0)), embedded=meta.get("embedded") == "1")
        self.bundle_digest = meta.get("bundle_digest", "")

    @classmethod
    def open(cls, path: Path) -> AdvisoryStore:
        """Open an existing database read-only; a missing or foreign file is an InputError."""
        if not path.is_file():
            raise InputError(f"no advisory database at {path}", hint="run `bastion db update`")
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False)
            return cls(conn, str(path))
        except sqlite3.Error as exc:
            raise InputError(f"{path}: cannot read the advisory database: {exc}",
                             hint="run `bastion db update` to rebuild it") from None

    def close(self) -> None:
        self._conn.close()

    def advisories_for(self, names: Iterable[str]) -> dict[str, list[Advisory]]:
        """The live (not withdrawn) advisories of each normalized package name."""
        wanted = sorted(set(names))
        found: dict[str, list[Advisory]] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT f.name, a.id, a.record FROM affects f JOIN advisory a ON a.id = f.id "  # noqa: S608 - placeholders only
                f"WHERE f.name IN ({marks})", chunk).fetchall()
            for name, ident, record in rows:
                advisory = self._parse(ident, record)
                if advisory is not None and not advisory.withdrawn:
                    found.setdefault(name, []).append(advisory)
        for items in found.values():
            items.sort(key=lambda a: a.id)
        return found

    def _parse(self, ident: str, record: str) -> Advisory | None:
        if ident not in self._parsed:
            try:
                self._parsed[ident] = parse_record(json.loads(record))
            except (ValueError, RecursionError):
                self._parsed[ident] = None
        return self._parsed[ident]


@dataclass
class _Tally:
    count: int = 0
    withdrawn: int = 0
    errors: int = 0
    newest: str = ""
    first_error: str = ""


def _insert(conn: sqlite3.Connection, entries: Iterable[Entry], tally: _Tally) -> None:
    for origin, record in entries:
        if isinstance(record, Exception) or not isinstance(record, dict) or not isinstance(
                record.get("id"), str):
            tally.errors += 1
            tally.first_error = tally.first_error or f"{origin}: {record!r}"[:300]
            continue
        if record.get("withdrawn"):
            tally.withdrawn += 1
            continue
        names = pypi_names(record)
        if not names:
            continue
        modified = str(record.get("modified") or "")
        old = conn.execute("SELECT modified FROM advisory WHERE id = ?", (record["id"],)).fetchone()
        if old is not None and old[0] >= modified:
            continue  # a duplicate: keep the newer copy
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        conn.execute("INSERT OR REPLACE INTO advisory VALUES (?, ?, ?)",
                     (record["id"], modified, text))
        conn.executemany("INSERT OR IGNORE INTO affects VALUES (?, ?)",
                         [(n, record["id"]) for n in names])
        tally.count += old is None
        tally.newest = max(tally.newest, modified)


def build(entries: Iterable[Entry], dest: Path, *, source: str, embedded: bool = False,
          stated_date: str | None = None, extra: dict[str, str] | None = None) -> DbInfo:
    """Import records into a new database at ``dest`` (replacing it atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            _fill(conn, entries, source=source, embedded=embedded, stated_date=stated_date,
                  extra=extra)
        finally:
            conn.close()
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return AdvisoryStore.open(dest).info


def build_in_memory(entries: Iterable[Entry], *, source: str, embedded: bool = False,
                    stated_date: str | None = None) -> AdvisoryStore:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    _fill(conn, entries, source=source, embedded=embedded, stated_date=stated_date)
    return AdvisoryStore(conn, ":memory:")


def _fill(conn: sqlite3.Connection, entries: Iterable[Entry], *, source: str,
          embedded: bool, stated_date: str | None, extra: dict[str, str] | None = None) -> None:
    conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
    tally = _Tally()
    with conn:
        _insert(conn, entries, tally)
        packages = conn.execute("SELECT COUNT(DISTINCT name) FROM affects").fetchone()[0]
        meta = {"format": DB_FORMAT, "source": source, "embedded": "1" if embedded else "0",
                "imported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "date": stated_date or tally.newest[:10], "count": str(tally.count),
                "packages": str(packages), "withdrawn": str(tally.withdrawn),
                "errors": str(tally.errors), "first_error": tally.first_error, **(extra or {})}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())


def _bundle_entries() -> tuple[Iterator[Entry], str, str | None]:
    bundle = read_bundle(embedded_bundle())
    stated = bundle.get("date")
    return (iter_bundle(bundle, f"embedded:{BUNDLE_NAME}"), str(bundle.get("source", "")),
            stated if isinstance(stated, str) else None)


def bundle_digest() -> str:
    """SHA-256 of the shipped snapshot: a database seeded from another one is re-seeded."""
    try:
        return hashlib.sha256(embedded_bundle().read_bytes()).hexdigest()
    except OSError:
        return ""


def import_embedded(dest: Path) -> DbInfo:
    entries, source, stated = _bundle_entries()
    return build(entries, dest, source=source, embedded=True, stated_date=stated,
                 extra={"bundle_digest": bundle_digest()})


def open_default(path: Path | None = None) -> AdvisoryStore:
    """The database to audit with; seeded from the shipped snapshot when there is none.

    A database that was itself seeded from another snapshot than the one now shipped (the
    package was upgraded) is re-seeded; one imported by ``bastion db update`` is kept. A
    cache folder that cannot be written gives an in-memory database for this process.
    """
    path = path or default_db_path()
    if path.is_file():
        store = AdvisoryStore.open(path)
        if not store.info.embedded or store.bundle_digest == bundle_digest():
            return store
        store.close()
    try:
        import_embedded(path)
        return AdvisoryStore.open(path)
    except OSError:
        entries, source, stated = _bundle_entries()
        return build_in_memory(entries, source=source, embedded=True, stated_date=stated)
