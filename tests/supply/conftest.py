"""Supply tests share one advisory store, built once per session from the shipped snapshot.

No test touches the user's cache: ``BASTION_DB`` and ``XDG_CACHE_HOME`` point into the
session's temporary folder for every test (and so for every CLI run inside a test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.supply.advisories.store import AdvisoryStore, import_embedded
from bastion.supply.inventory import Inventory, read_manifest

#: The real PyPA advisory-database snapshot beside the repository (tests that need the
#: folder itself, not the shipped bundle, skip when it is missing).
SHARED_DB = Path(__file__).resolve().parents[2] / ".." / "shared" / "advisory-db"


@pytest.fixture(scope="session")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("advisories") / "advisories.sqlite"
    import_embedded(path)
    return path


@pytest.fixture(scope="session")
def store(db_path: Path) -> Iterator[AdvisoryStore]:
    opened = AdvisoryStore.open(db_path)
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _isolated_db(db_path: Path, tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DB", str(db_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def manifest(tmp_path: Path) -> Callable[..., Inventory]:
    """Write a manifest into ``tmp_path`` and read it back."""

    def make(name: str, text: str | bytes, **kwargs: Any) -> Inventory:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return read_manifest(path, name, **kwargs)

    return make
