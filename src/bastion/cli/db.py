"""``bastion db``: the local advisory database that makes every audit offline.

``bastion db update`` imports OSV records from a folder of YAML/JSON (such as a checkout of
the PyPA advisory database), an OSV ``all.zip`` (a path or a URL: the only network access
Bastion makes, and only here), or the snapshot shipped with Bastion (``--embedded``).
``bastion db status`` says what is in it and how old it is.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from bastion.cli.common import guarded, stderr_console
from bastion.errors import InputError, UsageError

if TYPE_CHECKING:
    from bastion.supply.advisories.store import DbInfo

#: OSV's export of every PyPI record.
OSV_PYPI_ZIP = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
#: Largest download accepted (the PyPI export is tens of megabytes).
MAX_DOWNLOAD = 1 * 2**30

app = typer.Typer(help="Manage the local advisory database (offline audits).",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)
DB = typer.Option(None, "--db", envvar="BASTION_DB", dir_okay=False,
                  help="Database file (default: the user cache folder).")


@app.command("update")
def update(
    source: str = typer.Argument(None, help=f"Folder of OSV records, OSV all.zip (path or URL). "
                                 f"Default: {OSV_PYPI_ZIP}", show_default=False),
    embedded: bool = typer.Option(False, "--embedded", help="Reset to the snapshot shipped "
                                  "with Bastion (no network)."),
    db: Path | None = DB,
) -> None:
    """Import advisories into the local database (replaces it atomically)."""
    from bastion.supply.advisories.store import default_db_path, import_embedded

    with guarded():
        path = db or default_db_path()
        clock = time.perf_counter()
        if embedded:
            if source:
                raise UsageError("give a SOURCE or --embedded, not both")
            info = import_embedded(path)
        else:
            info = _import(source or OSV_PYPI_ZIP, path)
        _print(info, took=time.perf_counter() - clock)


def _import(source: str, path: Path) -> DbInfo:
    from bastion.supply.advisories.sources import iter_source
    from bastion.supply.advisories.store import build

    if source.startswith(("https://", "http://")):
        with tempfile.TemporaryDirectory(prefix="bastion-db-") as tmp:
            local = Path(tmp) / "all.zip"
            _download(source, local)
            return build(iter_source(local), path, source=source)
    local = Path(source).expanduser()
    return build(iter_source(local), path, source=str(local.resolve()))


def _download(url: str, dest: Path) -> None:
    stderr_console().print(f"downloading {url}", markup=False)
    try:
        import urllib.request  # only for `db update URL`: 80 ms that no other command pays

        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:  # noqa: S310 - https/http only, checked above
            total = 0
            while chunk := response.read(1 << 20):
                total += len(chunk)
                if total > MAX_DOWNLOAD:
                    raise InputError(f"{url}: download larger than {MAX_DOWNLOAD} bytes")
                out.write(chunk)
    except OSError as exc:
        raise InputError(f"cannot download {url}: {exc}",
                         hint="import from a local copy: `bastion db update PATH`") from None


@app.command("status")
def status(
    db: Path | None = DB,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show the database's source, date, age and size."""
    from bastion.supply.advisories.store import AdvisoryStore, default_db_path

    with guarded():
        path = db or default_db_path()
        if not path.is_file():
            raise InputError(f"no advisory database at {path}",
                             hint="it is created on the first audit, or by `bastion db update`")
        store = AdvisoryStore.open(path)
        info = store.info
        store.close()
        if as_json:
            data = {k: getattr(info, k) for k in info.__dataclass_fields__}
            typer.echo(json.dumps({**data, "age_days": info.age_days(),
                                   "stale": info.stale()}, indent=2))
        else:
            _print(info)


def _print(info: DbInfo, took: float | None = None) -> None:
    console = Console(highlight=False)
    age = info.age_days()
    rows = [("database", info.path), ("source", info.source + (" (shipped snapshot)"
                                                                if info.embedded else "")),
            ("data as of", f"{info.date or 'unknown'}" + (f" ({age} days old)"
                                                          if age is not None else "")),
            ("advisories", f"{info.count} for {info.packages} packages"),
            ("imported", info.imported)]
    if info.withdrawn or info.errors:
        rows.append(("skipped", f"{info.withdrawn} withdrawn, {info.errors} unreadable"))
    if took is not None:
        rows.append(("took", f"{took:.2f} s"))
    for key, value in rows:
        console.print(f"{key:>11}: {value}", markup=False)
    if info.stale():
        console.print("warning: older than 30 days; run `bastion db update`", style="yellow",
                      markup=False)
