"""The shipped list of popular PyPI projects that typosquat detection measures names against.

``data/popular-packages.txt`` holds the top :data:`TOP_N` most-downloaded projects, PEP 503
normalized, most downloaded first (the line order is the rank, which grades how tempting a
target a name is). It is built from a registry listing by running this module::

    python -m bastion.supply.heuristics.popular /path/to/pypi.tsv

The listing is a tab-separated file whose header names the columns; the
``rank_among_15000_most_downloaded`` column gives the rank. Nothing is fetched at run time:
the list ships with the package so the check works offline.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

from packaging.utils import canonicalize_name

#: How many of the most-downloaded projects the shipped list keeps.
TOP_N = 5_000
RANK_COLUMN = "rank_among_15000_most_downloaded"
DATA_FILE = "popular-packages.txt"


def build(rows: Iterable[dict[str, str]], top: int = TOP_N) -> list[str]:
    """The ``top`` best-ranked names of a listing, normalized, each once, best first."""
    ranked: list[tuple[int, str]] = []
    for row in rows:
        rank = (row.get(RANK_COLUMN) or "").strip()
        name = (row.get("name") or "").strip()
        if rank.isdigit() and name:
            ranked.append((int(rank), str(canonicalize_name(name))))
    ranked.sort()
    names: dict[str, None] = {}
    for _, name in ranked:
        if len(names) >= top:
            break
        names.setdefault(name, None)
    return list(names)


def render(names: Sequence[str], source: str) -> str:
    header = (f"# The {len(names)} most-downloaded PyPI projects, PEP 503 normalized, most "
              f"downloaded first.\n# Built by `python -m bastion.supply.heuristics.popular` "
              f"from {source}.\n")
    return header + "".join(f"{name}\n" for name in names)


@lru_cache(maxsize=1)
def popular() -> tuple[str, ...]:
    """The shipped list, most downloaded first (read once per process)."""
    text = resources.files("bastion.supply").joinpath("data", DATA_FILE).read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines()
                 if line.strip() and not line.startswith("#"))


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bastion.supply.heuristics.popular PYPI_TSV", file=sys.stderr)
        return 2
    source = Path(argv[0])
    csv.field_size_limit(1 << 20)
    with source.open(encoding="utf-8", newline="") as handle:
        names = build(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    out = Path(__file__).resolve().parents[1] / "data" / DATA_FILE
    out.write_text(render(names, source.name), encoding="utf-8")
    print(f"wrote {len(names)} names to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
