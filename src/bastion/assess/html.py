"""The assessment as one self-contained HTML file: summary, plots, tables, findings.

Same rules as the scan report (:mod:`bastion.report.html`): inline CSS, no scripts, no
external assets, a Content-Security-Policy that forbids both, every text escaped. The plots
are inline SVG (:mod:`bastion.assess.plots`): robust accuracy against ε, the membership
ROC curves on log-log axes (where low false-positive rates are visible), and copycat fidelity
against the number of queries.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from bastion.assess.plots import Axis, Series, line_chart
from bastion.assess.report import summary
from bastion.findings import Report
from bastion.report.html import _COLOURS, _CSS, _finding

if TYPE_CHECKING:
    from bastion.assess.run import Assessment

_EXTRA_CSS = """
.charts{display:flex;flex-wrap:wrap;gap:1rem;margin:.5rem 0} .charts svg{max-width:100%;
height:auto;border:1px solid #dee2e6;border-radius:.4rem;background:#fff}
table.data{margin:.5rem 0} table.data th{text-align:left;padding:.1rem .8rem .1rem 0;
border-bottom:1px solid #dee2e6} table.data td{font-variant-numeric:tabular-nums}
.summary li{margin:.3rem 0} .muted{color:#6c757d;font-size:.9rem}
"""


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="data"><tr>{head}</tr>{body}</table>'


def _robustness(assessment: Assessment) -> str:
    result = assessment.robustness
    if result is None:
        return "<p>Not assessed (the robustness part failed; see the findings).</p>"
    settings = assessment.settings
    attacks: dict[str, list[tuple[float, float]]] = {}
    for p in result.points:
        attacks.setdefault(p.attack, []).append((p.epsilon, p.robust_accuracy))
    # white-box attacks ran on the whole subset, whose clean accuracy is the ε = 0 point;
    # HopSkipJump ran on a few samples only
    series = [Series(name, tuple(points) if name == "HopSkipJump"
                     else ((0.0, result.clean_accuracy), *points))
              for name, points in attacks.items()]
    floor = settings.min_robust_accuracy
    top = max(settings.sweep)
    series.append(Series(f"policy minimum at ε={settings.robustness_epsilon:g}",
                         ((0.0, floor), (top, floor)), dashed=True, markers=False))
    chart = line_chart(series, Axis("ε (fraction of the input range, L∞)", 0.0, top),
                       Axis("accuracy under attack", 0.0, 1.0, percent=True),
                       "Robust accuracy vs perturbation budget")
    rows = [[p.attack, f"{p.epsilon:g}", _pct(p.robust_accuracy), _pct(p.success_rate),
             f"{p.mean_l2:.3f}", f"{p.mean_linf:.3f}", str(p.samples), f"{p.queries:,}",
             f"{p.seconds:.2f}"] for p in result.points]
    table = _table(["attack", "ε", "robust accuracy", "attack success", "mean L2",
                    "mean L∞", "samples", "queries", "seconds"], rows)
    notes = "".join(f"<p class=muted>Not assessed: {escape(n)}</p>"
                    for n in result.not_assessed)
    return (f"<p>Clean accuracy {_pct(result.clean_accuracy)} on {result.samples} unseen "
            f"samples. White-box engine: {escape(result.engine)}.</p>"
            f'<div class="charts">{chart}</div>{table}{notes}')


def _privacy(assessment: Assessment) -> str:
    result = assessment.privacy
    if result is None:
        return "<p>Not assessed (the privacy part failed; see the findings).</p>"
    parts = []
    if result.attacks:
        floor = 1e-3
        series = [Series(a.name, tuple((max(f, floor), max(t, floor)) for f, t in a.roc),
                         markers=False) for a in result.attacks]
        series.append(Series("chance", ((floor, floor), (1.0, 1.0)), dashed=True,
                             markers=False))
        chart = line_chart(series, Axis("false-positive rate", floor, 1.0, log=True),
                           Axis("true-positive rate", floor, 1.0, log=True),
                           "Membership inference ROC (log-log)")
        rows = [[a.name, f"{a.auc:.3f}", _pct(a.tpr_at_0_1), _pct(a.tpr_at_1),
                 f"{a.members} / {a.nonmembers}", f"{a.queries:,}", a.note]
                for a in result.attacks]
        table = _table(["attack", "AUC", "TPR @ 0.1% FPR", "TPR @ 1% FPR",
                        "members / non-members", "queries", "note"], rows)
        nonmembers = result.attacks[0].nonmembers
        parts.append(f'<div class="charts">{chart}</div>{table}'
                     f"<p class=muted>With {nonmembers} non-members the smallest non-zero "
                     f"false-positive rate is {1 / max(nonmembers, 1):.2%}: lower rates read "
                     "as “at zero false positives”.</p>")
        if result.train_accuracy is not None and result.test_accuracy is not None:
            parts.append(f"<p>Accuracy on training records {_pct(result.train_accuracy)}, on "
                         f"unseen records {_pct(result.test_accuracy)}.</p>")
    if result.attribute is not None:
        a = result.attribute
        parts.append(_table(["feature", "attack accuracy", "baseline (no model)", "advantage",
                             "records"],
                            [[str(a.feature), _pct(a.attack_accuracy),
                              _pct(a.baseline_accuracy), _pct(a.advantage), str(a.samples)]]))
    parts.extend(f"<p class=muted>Not assessed: {escape(n)}</p>" for n in result.not_assessed)
    return "".join(parts)


def _extraction(assessment: Assessment) -> str:
    result = assessment.extraction
    if result is None:
        return "<p>Not assessed (the extraction part failed; see the findings).</p>"
    if not result.points:
        return "<p>No copycat could be trained within the query budget.</p>"
    settings = assessment.settings
    low = min(p.queries for p in result.points)
    high = max(p.queries for p in result.points)
    floor = min([p.fidelity for p in result.points] + [settings.max_extraction_fidelity])
    y_low = max(0.0, min(0.5, floor - 0.05))
    series = [
        Series("fidelity (agreement with the model)",
               tuple((float(p.queries), p.fidelity) for p in result.points)),
        Series("copy's own accuracy", tuple((float(p.queries), p.accuracy)
                                            for p in result.points)),
        Series("policy limit", ((low, settings.max_extraction_fidelity),
                                (high, settings.max_extraction_fidelity)),
               dashed=True, markers=False),
    ]
    chart = line_chart(series, Axis("queries", low * 0.9, high * 1.1, log=True),
                       Axis("share of unseen inputs", y_low, 1.0, percent=True),
                       "Copycat fidelity vs queries")
    rows = [[f"{p.queries:,}", _pct(p.fidelity), _pct(p.accuracy)] for p in result.points]
    return (f'<div class="charts">{chart}</div>'
            + _table(["queries", "fidelity", "copy accuracy"], rows)
            + f"<p class=muted>Substitute: {escape(result.substitute)}; fidelity on "
              f"{result.test_samples} unseen inputs; the model's own accuracy there "
              f"{_pct(result.victim_accuracy)}.</p>")


def render_html(report: Report, assessment: Assessment) -> str:
    verdict = ('<span class="verdict pass">PASSED</span>' if report.passed
               else '<span class="verdict fail">FAILED</span>')
    counts = "".join(
        f'<span style="background:{_COLOURS[s]}">{n} {escape(s.value)}</span>'
        for s, n in report.counts().items())
    from bastion.catalogue import all_rules

    rules = {rule.id: rule for rule in all_rules()}
    findings = "\n".join(_finding(f, rules) for f in report.findings) or "<p>No findings.</p>"
    points = "".join(f"<li>{escape(line)}</li>" for line in summary(assessment))
    settings = assessment.settings
    shape = "×".join(str(d) for d in assessment.input_shape)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Bastion assessment — {escape(assessment.target)}</title>
<style>{_CSS}{_EXTRA_CSS}</style></head>
<body>
<h1>Bastion assessment</h1>
<p class="meta">Bastion {escape(report.tool_version)} · {escape(report.started.isoformat())} ·
{escape(assessment.target)} ({escape(assessment.family)}) · data {escape(assessment.data)}:
{assessment.holdout_samples} unseen and {assessment.member_samples} training samples of shape
{escape(shape)}, {assessment.n_classes} classes · seed {settings.seed} ·
{assessment.queries:,} queries · {assessment.seconds:.1f} s</p>
<p>{verdict} &nbsp;{len(report.failing)} finding(s) at or above
<b>{escape(report.fail_on.value)}</b></p>
<div class="counts">{counts}</div>
<h2>Summary</h2>
<ul class="summary">{points}</ul>
<h2>Adversarial robustness (OWASP ML01)</h2>
{_robustness(assessment)}
<h2>Membership and attribute inference (OWASP ML04, ML03)</h2>
{_privacy(assessment)}
<h2>Model extraction (OWASP ML05)</h2>
{_extraction(assessment)}
<h2>Findings</h2>
{findings}
</body></html>
"""
