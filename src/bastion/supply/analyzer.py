"""The ``supply`` capability of ``bastion scan``: audit every manifest the walk meets.

Manifests are named by convention, so this analyzer claims by name (``requirements*.txt``,
``*.in``, ``pyproject.toml``, ``poetry.lock``, ``uv.lock``, ``Pipfile.lock``, ``pylock*.toml``,
``environment.yml``), also inside archives. The advisory store is opened once per process,
on first use (seeded from the shipped snapshot if there is none); :meth:`notes` gives the
database's date and age for the report.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.analyzer import Context, Target
from bastion.errors import InputError
from bastion.findings import Finding, Location
from bastion.rules import Rule
from bastion.supply import rules
from bastion.supply.names import manifest_kind

if TYPE_CHECKING:  # the auditing machinery loads on the first manifest, not at start-up
    from bastion.supply.advisories.store import AdvisoryStore

_lock = threading.Lock()
_stores: dict[str, AdvisoryStore] = {}


def shared_store(path: Path | None = None) -> AdvisoryStore:
    """The store for a database path, opened once per process (seeding it if needed)."""
    from bastion.supply.advisories.store import default_db_path, open_default

    path = path or default_db_path()
    key = str(path)
    with _lock:
        if key not in _stores:
            _stores[key] = open_default(path)
        return _stores[key]


def _looks_like_setuptools_manifest(head: bytes) -> bool:
    """A ``*.in`` file may be a setuptools ``MANIFEST.in`` by another name: not ours."""
    for raw in head.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return line.split()[0] in ("include", "recursive-include", "graft", "prune",
                                       "exclude", "global-include", "global-exclude")
    return False


class SupplyAnalyzer:
    """Known-vulnerable, malicious, unpinned and unhashed dependencies in manifests."""

    name = "supply-manifest"
    capability = "supply"
    rules: tuple[Rule, ...] = rules.RULES

    def __init__(self, store: AdvisoryStore | None = None, db_path: Path | None = None) -> None:
        self._store = store
        self._db_path = db_path
        self._used: AdvisoryStore | None = None

    def claims(self, target: Target) -> bool:
        if manifest_kind(target.name) is None:
            return False
        return not (target.name.lower().endswith(".in")
                    and _looks_like_setuptools_manifest(target.head))

    def store(self) -> AdvisoryStore:
        """The store audits use; raises :class:`InputError` when it cannot be opened."""
        store = self._store or shared_store(self._db_path)
        self._used = store
        return store

    def notes(self) -> tuple[str, ...]:
        """The database's source, date and age, once a manifest has been audited."""
        from bastion.supply.assess import db_notes

        return db_notes(self._used.info) if self._used is not None else ()

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        from bastion.supply.assess import assess, db_notes
        from bastion.supply.inventory import read_stream, reader_for
        from bastion.supply.inventory.requirements import RequirementsReader

        reader = reader_for(target.name)
        if reader is None:
            return []
        source = str(target.location)
        on_disk = Path(target.location.path) if not target.location.members else None
        if isinstance(reader, RequirementsReader) and on_disk is not None and on_disk.is_file():
            # Included files that are manifests in their own right are scanned on their own.
            inventory = reader.read_path(on_disk, source, lambda p: reader_for(p.name) is None)
        else:
            with target.open() as stream:
                inventory = read_stream(reader, stream, source)

        def locate(where: str, line: int | None) -> Location:
            if where == source:
                return target.location.at(line=line)
            return Location(path=where, line=line)

        findings: list[Finding] = []
        try:
            store: AdvisoryStore | None = self.store()
        except InputError as exc:
            store = None
            findings.append(rules.DB_UNAVAILABLE.finding(target.location, exc.message,
                                                         evidence=exc.hint))
        if store is not None:
            for note in db_notes(store.info):
                ctx.note(note)
        found, _assessments = assess(inventory, store, locate)
        findings.extend(found)
        return findings
