"""Build the advisory snapshot shipped inside the package (``supply/data/*.json.xz``).

    python -m bastion.supply.advisories.bundle ../shared/advisory-db \\
        --source "PyPA advisory-database, commit 3ccb612, 2024-10-10" --date 2024-10-10

Reads every OSV record of the folder (its ``vulns/`` tree), keeps the PyPI ones that are not
withdrawn, sorts them by id for a reproducible file, packs them as one xz-compressed JSON
document, and copies the database's licence next to it: the PyPA data is CC-BY-4.0 and
the attribution must travel with every copy.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import sys
from pathlib import Path
from typing import Any

from bastion.supply.advisories.osv import pypi_names
from bastion.supply.advisories.sources import BUNDLE_FORMAT, iter_folder

DATA = Path(__file__).resolve().parents[1] / "data"
LICENSE_NAME = "pypa-advisory-db.LICENSE"


def collect(root: Path) -> tuple[list[dict[str, Any]], int]:
    """The live PyPI records under a folder, sorted by id, and the number of bad files."""
    records: dict[str, dict[str, Any]] = {}
    errors = 0
    for _origin, record in iter_folder(root):
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            errors += 1
            continue
        if record.get("withdrawn") or not pypi_names(record):
            continue
        records[record["id"]] = json.loads(json.dumps(record, default=str))  # dates → text
    return [records[k] for k in sorted(records)], errors


def write_bundle(records: list[dict[str, Any]], out: Path, *, source: str, date: str) -> int:
    document = {"format": BUNDLE_FORMAT, "source": source, "date": date, "records": records}
    payload = json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    data = lzma.compress(payload.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    out.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", type=Path, help="advisory-database checkout (or its vulns/)")
    parser.add_argument("--source", required=True, help="what the snapshot is, for reports")
    parser.add_argument("--date", required=True, help="the snapshot's date (YYYY-MM-DD)")
    parser.add_argument("--out", type=Path, default=DATA / "pypa-advisory-db.json.xz")
    args = parser.parse_args(argv)
    root = args.database / "vulns" if (args.database / "vulns").is_dir() else args.database
    records, errors = collect(root)
    size = write_bundle(records, args.out, source=args.source, date=args.date)
    licence = args.database / "LICENSE"
    if licence.is_file():
        shutil.copyfile(licence, args.out.parent / LICENSE_NAME)
    print(f"{len(records)} records ({errors} unreadable) -> {args.out} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
