"""``bastion assess``: red-team a model before it ships (robustness, privacy, extraction)."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from bastion.cli.common import (
    FAIL_ON,
    FORMAT,
    OUTPUT,
    POLICY,
    QUIET,
    exit_code,
    fail,
    guarded,
    resolve_policy,
    stderr_console,
    write_output,
)
from bastion.findings import Severity
from bastion.report import Format

if TYPE_CHECKING:
    from bastion.assess.run import Assessment
    from bastion.findings import Report


def assess(
    model: str | None = typer.Argument(
        None, show_default=False,
        help="Model file (TorchScript, ONNX, skops, scikit-learn joblib/pickle that passes "
             "`bastion scan`). With --demo: the demo, digits (default) or breast-cancer."),
    demo: bool = typer.Option(
        False, "--demo", help="Assess a model trained here on scikit-learn's bundled data "
                              "(offline, about a minute on a CPU)."),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled samples the model never saw: .npz (arrays x and y), "
                             "CSV, or a folder with one sub-folder of images per class."),
    members: Path | None = typer.Option(
        None, "--members", help="Labelled samples the model was trained on, for membership "
                                "inference (same format as --data)."),
    factory: str | None = typer.Option(
        None, "--factory", help="module:function building the architecture, for PyTorch "
                                "weights in safetensors (as the gateway's torch loader)."),
    label_column: str | None = typer.Option(
        None, "--label-column", help="CSV column holding the label (name or index; default: "
                                     "label/target/class/y, else the last)."),
    epsilons: str | None = typer.Option(
        None, "--epsilons", help="Perturbation budgets, fractions of the input range "
                                 "(L∞), e.g. 0.05,0.1,0.2 (default: the policy's)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice."),
    max_queries: int | None = typer.Option(
        None, "--max-queries", help="Largest copycat query budget (default 1000)."),
    samples: int | None = typer.Option(
        None, "--samples", help="Samples attacked by FGSM/PGD and used per membership side "
                                "(default 500)."),
    sensitive_feature: int | None = typer.Option(
        None, "--sensitive-feature", help="Index of a categorical feature to attack with "
                                          "attribute inference (tabular data)."),
    threads: int | None = typer.Option(
        None, "--threads", help="PyTorch threads while assessing (default: one per core; "
                                "the demo uses one, its model is tiny)."),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="Assess a model served by `bastion serve` at this URL "
                                 "instead of a file (black-box: every query through the "
                                 "gateway; http only to loopback)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="BASTION_API_KEY", show_default=False,
        help="The gateway key (or bearer token) of the principal to assess as."),
    endpoint_model: str | None = typer.Option(
        None, "--model", help="The served model's name (with --endpoint)."),
    budget: int | None = typer.Option(
        None, "--budget", min=1, help="Most queries the assessment may send (with "
                                      "--endpoint; default: no limit but the quota)."),
    max_wait: float = typer.Option(
        60.0, "--max-wait", min=0, max=86_400,
        help="Seconds the assessment may wait in all on the gateway's 429 Retry-After."),
    fmt: Format = FORMAT,
    output: Path | None = OUTPUT,
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    quiet: bool = QUIET,
) -> None:
    """Measure adversarial robustness, membership leakage and extraction; exit 1 when a
    finding reaches the threshold."""
    with guarded():
        if fmt is Format.CYCLONEDX:
            fail("--format cyclonedx is for SBOMs; assess writes terminal, json, sarif or html")
        if demo and (data is not None or members is not None):
            fail("--demo trains its own model on its own data; drop --data/--members")
        if endpoint is not None and (demo or model is not None or factory is not None):
            fail("--endpoint assesses a served model: drop the model file, --demo and "
                 "--factory")
        if endpoint is None and (endpoint_model or budget):
            fail("--model and --budget go with --endpoint URL")
        if endpoint is not None and not endpoint_model:
            fail("--endpoint needs the served model's name: --model NAME")
        if endpoint is not None and not api_key:
            fail("--endpoint needs a key: --api-key or the BASTION_API_KEY variable")
        if not demo and model is None and endpoint is None:
            fail("give a model file and --data, or --demo",
                 "bastion assess --demo   |   bastion assess model.pt --data eval.npz")
        if not demo and data is None:
            fail("--data is required: labelled samples the model never saw",
                 "e.g. numpy.savez('eval.npz', x=samples, y=labels)")
        policy, source = resolve_policy(policy_file, fail_on)
        from bastion.assess.settings import parse_epsilons, parse_settings

        base = parse_settings(policy.assess, source or "<policy>")
        if threads is None and demo and base.threads == 0:
            threads = 1  # the demo's model is tiny: one thread is as fast, and steadier
        settings = base.with_overrides(
            epsilons=parse_epsilons(epsilons) if epsilons is not None else None, seed=seed,
            max_queries=max_queries, samples=samples, sensitive_feature=sensitive_feature,
            threads=threads)
        from bastion.assess.report import build_report
        from bastion.assess.run import run_assessment

        progress, stop = _progress(quiet)
        try:
            if demo:
                from bastion.assess.demo import demo as make_demo

                progress("training the demo model")
                target, evaluation, description = make_demo(model or "digits", settings.seed)
            elif endpoint is not None:
                from bastion.assess.data import load_dataset
                from bastion.assess.endpoint import endpoint_target

                assert data is not None
                assert endpoint_model
                assert api_key
                holdout = load_dataset(data, label_column=label_column)
                known = (load_dataset(members, label_column=label_column)
                         if members is not None else None)
                progress("connecting to the gateway")
                target, evaluation = endpoint_target(endpoint, api_key, endpoint_model,
                                                     holdout, known, budget=budget,
                                                     max_wait=max_wait)
                description = f"the gateway's model {endpoint_model!r}"
            else:
                from bastion.assess.data import EvalData, load_dataset
                from bastion.assess.targets import load_target

                assert model is not None
                assert data is not None
                holdout = load_dataset(data, label_column=label_column)
                known = (load_dataset(members, label_column=label_column)
                         if members is not None else None)
                evaluation = EvalData.of(holdout, known)
                progress("scanning and loading the model")
                target = load_target(model, evaluation, factory=factory)
                description = ""
            assessment = run_assessment(target, evaluation, settings,
                                        description=description, progress=progress)
        finally:
            stop()
        report = build_report(assessment, policy, policy_source=source)
        _emit(report, assessment, fmt, output, quiet)
    raise typer.Exit(exit_code(report))


def _progress(quiet: bool) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A spinner naming the running attack, on standard error when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        return (lambda _: None), (lambda: None)
    status = stderr_console().status("assessing")
    status.start()
    return (lambda message: status.update(f"assessing: {message}")), status.stop


def _emit(report: Report, assessment: Assessment, fmt: Format, output: Path | None,
          quiet: bool) -> None:
    from rich.console import Console

    from bastion.assess.report import print_assessment, render_json

    if fmt is Format.TERMINAL and output is None:
        print_assessment(report, assessment, Console(highlight=False))
        return
    if fmt is Format.JSON:
        text = render_json(report, assessment)
    elif fmt is Format.HTML:
        from bastion.assess.html import render_html

        text = render_html(report, assessment)
    elif fmt is Format.SARIF:
        from bastion.report import render

        text = render(report, Format.SARIF)
    else:
        buffer = io.StringIO()
        print_assessment(report, assessment, Console(
            file=buffer, width=100, color_system=None, force_terminal=False, highlight=False))
        text = buffer.getvalue()
    write_output(text, output)
    if not quiet:
        from bastion.assess.report import summary_line

        stderr_console().print(summary_line(report, assessment))
