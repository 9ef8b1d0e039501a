"""Inventory readers: one module per manifest format, chosen by the file's name.

Manifests are named by convention (``requirements.txt``, ``uv.lock``...), so here, unlike
model formats, the name decides the reader. :func:`reader_for` picks one;
:func:`read_manifest` reads a file (or an archive member) with bounded memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from bastion.supply.inventory.conda import CondaReader
from bastion.supply.inventory.installed import is_site_packages, read_environment, site_packages_of
from bastion.supply.inventory.interface import (
    Dependency,
    Inventory,
    Reader,
    SkipKind,
    SkippedDependency,
    read_bounded,
)
from bastion.supply.inventory.pipfile_lock import PipfileLockReader
from bastion.supply.inventory.poetry_lock import PoetryLockReader
from bastion.supply.inventory.pylock import PylockReader
from bastion.supply.inventory.pyproject import PyprojectReader
from bastion.supply.inventory.requirements import RequirementsReader
from bastion.supply.inventory.uv_lock import UvLockReader

REQUIREMENTS = RequirementsReader()
READERS: tuple[Reader, ...] = (
    REQUIREMENTS, PyprojectReader(), PoetryLockReader(), UvLockReader(), PipfileLockReader(),
    PylockReader(), CondaReader(),
)


def reader_for(name: str) -> Reader | None:
    """The reader for a manifest file name, or None when the name is not a manifest's."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return next((r for r in READERS if r.matches(base)), None)


def read_stream(reader: Reader, stream: IO[bytes], source: str) -> Inventory:
    """Read a manifest from a stream, at most ``MAX_MANIFEST_BYTES`` of it."""
    data, truncated = read_bounded(stream)
    return reader.read(data, source, truncated=truncated)


def read_manifest(path: Path, display: str | None = None, reader: Reader | None = None,
                  *, follow_includes: bool = True) -> Inventory:
    """Read a manifest file on disk; requirements files follow their ``-r``/``-c`` includes."""
    shown = display or str(path)
    chosen = reader or reader_for(path.name) or REQUIREMENTS
    if isinstance(chosen, RequirementsReader):
        return chosen.read_path(path, shown, lambda _p: follow_includes)
    with path.open("rb") as handle:
        return read_stream(chosen, handle, shown)


__all__ = ["READERS", "REQUIREMENTS", "Dependency", "Inventory", "Reader", "SkipKind",
           "SkippedDependency", "is_site_packages", "read_environment", "read_manifest",
           "read_stream", "reader_for", "site_packages_of"]
