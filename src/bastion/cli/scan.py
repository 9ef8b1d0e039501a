"""``bastion scan PATH...``: the gate for CI and pre-commit, and for bulk scans of a store."""

from __future__ import annotations

from pathlib import Path

import typer

from bastion.cli.common import (
    FAIL_ON,
    FORMAT,
    OUTPUT,
    POLICY,
    QUIET,
    emit,
    exit_code,
    fail,
    guarded,
    progress_reporter,
    resolve_policy,
)
from bastion.findings import Severity
from bastion.report import Format

_BULK = "Bulk scans"


def scan(
    paths: list[str] | None = typer.Argument(None, help="Files and folders to scan.",
                                             show_default=False),
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
    cache: str | None = typer.Option(
        None, "--cache", envvar="BASTION_CACHE", metavar="[URL]", rich_help_panel=_BULK,
        help="Keep results in a cache and reuse them for unchanged content: a database URL "
             "(sqlite:///path.db, postgresql://...), or none for the default "
             "($BASTION_DB_URL, else ~/.bastion/bastion.db). Off unless given."),
    no_cache: bool = typer.Option(False, "--no-cache", rich_help_panel=_BULK,
                                  help="No result cache, whatever $BASTION_CACHE says."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", envvar="BASTION_JOBS", min=0, rich_help_panel=_BULK,
        help="Worker processes (0: one per CPU; default 1, this process). With --ray: Ray "
             "tasks at once (default: every CPU of the cluster)."),
    ray: str | None = typer.Option(
        None, "--ray", envvar="BASTION_RAY", metavar="[ADDRESS]", rich_help_panel=_BULK,
        help="Run the work as Ray tasks (extra bastion-mlsec[ray]): at ADDRESS (auto, "
             "ray://head:10001, host:6379), or none for ray.init()'s choice ($RAY_ADDRESS, "
             "else a local instance). Files must be at the same paths on every node."),
    from_file: str | None = typer.Option(
        None, "--from", metavar="FILE", rich_help_panel=_BULK,
        help="Also scan the paths and http(s) URLs listed in FILE, one per line ('-': "
             "standard input); paths are relative to FILE's folder."),
) -> None:
    """Scan model files, manifests and folders; exit 1 when a finding reaches the threshold."""
    with guarded():
        if not paths and from_file is None:
            fail("Missing argument 'PATHS...': give files or folders to scan, or --from FILE")
        policy, source = resolve_policy(policy_file, fail_on)
        bulk = (cache is not None and not no_cache) or jobs is not None or ray is not None \
            or from_file is not None
        update, stop = progress_reporter(quiet)
        try:
            if bulk:
                from bastion import scale

                ray_address = scale.ray_address(ray)

                report = scale.scan(
                    paths or [], policy, policy_source=source, progress=update,
                    cache=None if no_cache else scale.cache_url(cache),
                    jobs=jobs if jobs is not None else (0 if ray_address else 1),
                    ray=ray_address,
                    manifest=from_file,
                )
            else:
                from bastion.engine import scan_paths  # the analyzers load here, not at start-up

                report = scan_paths(paths or [], policy, policy_source=source, progress=update)
        finally:
            stop()
        emit(report, fmt, output, quiet)
    raise typer.Exit(exit_code(report))
