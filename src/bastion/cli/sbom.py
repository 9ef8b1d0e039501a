"""``bastion sbom PATH...``: a CycloneDX 1.6 SBOM of a project, offline.

Components: every dependency the manifests, lock files and installed environments under the
paths name (purl, hashes from lock files, licenses from installed metadata, the dependency
graph where a lock file records it) and every model file (``machine-learning-model``, SHA-256,
format, scan verdict). Vulnerabilities (VEX) come from the offline audit.

Exit codes: 0 the SBOM is complete; 1 it was written but something could not be read, was
cut at a limit or was not hashed (each named on standard error and in the document's
``bastion:incomplete`` properties); 2 usage or operational error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bastion.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    OUTPUT,
    POLICY,
    QUIET,
    guarded,
    resolve_policy,
    stderr_console,
    write_atomic,
)
from bastion.errors import UsageError

if TYPE_CHECKING:
    from bastion.sbom.values import Sbom

DB = typer.Option(None, "--db", envvar="BASTION_DB", dir_okay=False,
                  help="Advisory database file (default: the user cache folder).")
#: Problems listed one by one on standard error; the rest are counted.
SHOWN_PROBLEMS = 20


def sbom(
    paths: list[str] = typer.Argument(None, help="Project folders, manifests, lock files, "
                                      "virtual environments or model files.",
                                      show_default=False),
    python: Path | None = typer.Option(None, "--python", help="Include the environment of this "
                                       "interpreter (read from metadata, never run)."),
    no_scan: bool = typer.Option(False, "--no-scan", help="Hash model files without scanning "
                                 "them (their verdict is 'not-scanned')."),
    reproducible: bool = typer.Option(False, "--reproducible", envvar="BASTION_REPRODUCIBLE",
                                      help="Serial number derived from the content; timestamp "
                                           "from SOURCE_DATE_EPOCH, else left out."),
    db: Path | None = DB,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    quiet: bool = QUIET,
) -> None:
    """Write a CycloneDX 1.6 JSON SBOM with VEX; exit 1 when it is incomplete."""
    from bastion.report.cyclonedx import epoch_timestamp, require_library, to_cyclonedx
    from bastion.sbom.generate import generate
    from bastion.supply.advisories.store import open_default

    with guarded():
        require_library()
        if not paths and python is None:
            raise UsageError("nothing to describe", hint="give project folders or files, or "
                             "--python PATH")
        policy, source = resolve_policy(policy_file)
        store = open_default(db)
        made = generate(paths or [], store, policy, python=python, scan=not no_scan,
                        policy_source=source)
        text = to_cyclonedx(made.sbom, timestamp=epoch_timestamp(), reproducible=reproducible)
        if output is None:
            typer.echo(text, nl=False)
        else:
            write_atomic(output, text)
        _summary(made.sbom, output, quiet)
    raise typer.Exit(EXIT_OK if made.sbom.complete else EXIT_FINDINGS)


def _summary(sbom: Sbom, output: Path | None, quiet: bool) -> None:
    """One line of counts (unless quiet), then every reason the SBOM may be incomplete."""
    console = stderr_console()
    if not quiet:
        models = sum(m.kind == "machine-learning-model" for m in sbom.models)
        graph = f"dependency graph from {', '.join(sbom.graph_sources)}" if sbom.graph_sources \
            else "no dependency graph (no lock file or installed metadata with edges)"
        where = f" → {output}" if output else ""
        console.print(f"SBOM: {len(sbom.packages)} packages, {models} models, "
                      f"{len(sbom.models) - models} other files, {len(sbom.vulnerabilities)} "
                      f"vulnerabilities; {graph}{where}", markup=False)
    for problem in sbom.problems[:SHOWN_PROBLEMS]:
        console.print(f"warning: incomplete: {problem}", style="yellow", markup=False)
    if len(sbom.problems) > SHOWN_PROBLEMS:
        console.print(f"warning: ... and {len(sbom.problems) - SHOWN_PROBLEMS} more",
                      style="yellow", markup=False)
