"""A synthetic but realistic N-package environment: a requirements file and a site-packages.

Names: the N most downloaded PyPI projects (the rank column of the package list this
workplace ships, ``/work/.library/env/packages/pypi.tsv``), each with its listed version.
Versions are made realistic for an audit: a project that has advisories in the database is
pinned to the newest version one of its advisories lists as affected (an environment that
has not been upgraded for a while), so matching and fix computation do real work.
The site-packages folder holds one ``<name>-<version>.dist-info/METADATA`` per project.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYPI_TSV = Path("/work/.library/env/packages/pypi.tsv")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    vulnerable: bool


def top_projects(count: int, listing: Path = PYPI_TSV) -> list[tuple[str, str]]:
    """(name, version) of the ``count`` highest-ranked projects with a PEP 440 version."""
    ranked: list[tuple[int, str, str]] = []
    csv.field_size_limit(sys.maxsize)
    with listing.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            rank = (row.get("rank_among_15000_most_downloaded") or "").strip()
            if rank.isdigit() and _pep440(row.get("version") or ""):
                ranked.append((int(rank), row["name"], row["version"]))
    ranked.sort()
    seen: set[str] = set()
    chosen = []
    for _rank, name, version in ranked:
        key = canonicalize_name(name)
        if key not in seen:
            seen.add(key)
            chosen.append((name, version))
        if len(chosen) == count:
            break
    return chosen


def _pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def pins(projects: Iterable[tuple[str, str]], db: Path) -> list[Pin]:
    """Pin each project; those with listed affected versions to the newest of them."""
    from bastion.supply.advisories.store import AdvisoryStore

    projects = list(projects)
    store = AdvisoryStore.open(db)
    try:
        known = store.advisories_for(canonicalize_name(n) for n, _ in projects)
    finally:
        store.close()
    chosen = []
    for name, latest in projects:
        newest = _pep440(latest)
        affected = [v for a in known.get(canonicalize_name(name), []) for e in a.affected
                    for v in e.versions if (p := _pep440(v)) and newest and p <= newest
                    and not p.is_prerelease]
        if affected:
            chosen.append(Pin(name, max(affected, key=Version), True))
        else:
            chosen.append(Pin(name, latest, False))
    return chosen


def write(folder: Path, chosen: list[Pin]) -> tuple[Path, Path]:
    """requirements.txt and site-packages/ for the pins; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    requirements = folder / "requirements.txt"
    lines = ["# synthetic benchmark environment: the most downloaded PyPI projects"]
    lines += [f"{p.name}=={p.version}" for p in chosen]
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    site = folder / "site-packages"
    for pin in chosen:
        dist = site / f"{canonicalize_name(pin.name).replace('-', '_')}-{pin.version}.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {pin.name}\nVersion: {pin.version}\n"
            f"Summary: {pin.name} (benchmark stand-in)\nLicense: MIT\n\n"
            "A long description that a reader must not parse.\n", encoding="utf-8")
        (dist / "INSTALLER").write_text("pip\n", encoding="utf-8")
    return requirements, site
