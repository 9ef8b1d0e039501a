"""Heuristics tests build packages in ``tmp_path`` and scan them; none needs the advisory DB.

The supply tests' autouse fixture builds the advisory database once per session; these
tests never open it, so it is replaced here by one that only keeps the user's cache out of
reach (``BASTION_DB`` points into the test's own folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DB", str(tmp_path / "no-db" / "advisories.sqlite"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file every malicious payload would create if it ever ran."""
    return tmp_path / "payload-ran"
