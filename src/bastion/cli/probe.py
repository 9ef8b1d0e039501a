"""``bastion probe URL...``: read-only checks of live ML endpoints you own.

Identifies each server (TorchServe, Triton, KServe, MLflow, Ray, Jupyter, Bastion's gateway)
and reports what answers without credentials, through the same report, formats and exit codes
as ``bastion scan``. Only GET, HEAD and OPTIONS are sent, only to the origins named.
"""

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
    guarded,
    resolve_policy,
)
from bastion.findings import Severity
from bastion.report import Format


def probe(
    urls: list[str] = typer.Argument(..., help="Endpoints to probe, e.g. http://10.0.0.5:8081 "
                                     "(one per API port).", show_default=False),
    timeout: float = typer.Option(5.0, "--timeout", min=0.1, max=120.0,
                                  help="Seconds allowed for each request."),
    deadline: float = typer.Option(30.0, "--deadline", min=0.5, max=600.0,
                                   help="Seconds allowed for each target, all requests "
                                        "together."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, max=64,
                                    help="Targets probed at once."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify TLS certificates "
                                  "(self-signed endpoints)."),
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
) -> None:
    """Probe live ML endpoints (read-only); exit 1 when a finding reaches the threshold."""
    with guarded():
        policy, source = resolve_policy(policy_file, fail_on)
        from bastion.exposure.probe import ProbeOptions, probe_targets

        options = ProbeOptions(timeout=timeout, deadline=deadline, concurrency=concurrency,
                               verify_tls=not insecure)
        report = probe_targets(urls, options, policy, policy_source=source)
        emit(report, fmt, output, quiet)
    raise typer.Exit(exit_code(report))
