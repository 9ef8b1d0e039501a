"""A self-contained HTML report: one file, inline CSS, no scripts, no external assets.

Every text is escaped, and a Content-Security-Policy forbids scripts and remote loads, so
a hostile string in a scanned file cannot turn the report into an attack on its reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from bastion.findings import Finding, Report, Severity
from bastion.rules import Rule

_COLOURS = {
    Severity.CRITICAL: "#b00020",
    Severity.HIGH: "#d9480f",
    Severity.MEDIUM: "#c98a00",
    Severity.LOW: "#1c7ed6",
    Severity.INFO: "#868e96",
}

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:70rem;padding:0 1rem;color:#212529}
h1{font-size:1.6rem;margin-bottom:.2rem} .meta{color:#6c757d;font-size:.9rem}
.verdict{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;color:#fff;font-weight:700}
.pass{background:#2b8a3e}.fail{background:#c92a2a}
.counts span{display:inline-block;margin:.5rem .6rem 0 0;padding:.15rem .6rem;border-radius:1rem;
color:#fff;font-size:.85rem}
details{border:1px solid #dee2e6;border-radius:.4rem;margin:.5rem 0;padding:.4rem .8rem}
details[open]{background:#f8f9fa} summary{cursor:pointer}
.sev{display:inline-block;min-width:5.5rem;font-weight:700;font-size:.8rem;text-transform:uppercase}
.rule{font-family:ui-monospace,monospace;font-weight:600} .loc{font-family:ui-monospace,monospace;
color:#495057;word-break:break-all}
pre{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #e9ecef;
padding:.5rem;border-radius:.3rem;font-size:.85rem} .supp{color:#868e96;font-style:italic}
table{border-collapse:collapse;font-size:.9rem} td{padding:.1rem .8rem .1rem 0}
"""


def _finding(f: Finding, rules: Mapping[str, Rule]) -> str:
    colour = _COLOURS[f.severity]
    rule = rules.get(f.rule_id)
    parts = [
        "<details>",
        f'<summary><span class="sev" style="color:{colour}">{escape(f.severity.value)}</span>'
        f'<span class="rule">{escape(f.rule_id)}</span> — {escape(f.message)}'
        f'<br><span class="loc">{escape(str(f.location))}</span>',
    ]
    if f.suppression is not None:
        parts.append(f'<br><span class="supp">suppressed: {escape(f.suppression.reason)}</span>')
    parts.append("</summary>")
    if rule is not None:
        parts.append(f"<p>{escape(rule.description)}</p>")
    if f.evidence:
        parts.append(f"<p><b>Evidence</b></p><pre>{escape(f.evidence)}</pre>")
    if f.remediation:
        parts.append(f"<p><b>Fix:</b> {escape(f.remediation)}</p>")
    if f.references:
        links = ", ".join(
            f'<a href="{escape(r.url)}" rel="noreferrer">{escape(r.id)}</a>' if r.url
            and r.url.startswith("https://") else escape(r.id)
            for r in f.references
        )
        parts.append(f"<p><b>References:</b> {links}</p>")
    parts.append(f'<p class="meta">fingerprint {escape(f.fingerprint)} · '
                 f"category {escape(f.category.value)}</p></details>")
    return "".join(parts)


def render_html(report: Report, rules: Mapping[str, Rule]) -> str:
    verdict = ('<span class="verdict pass">PASSED</span>' if report.passed
               else '<span class="verdict fail">FAILED</span>')
    counts = "".join(
        f'<span style="background:{_COLOURS[s]}">{n} {escape(s.value)}</span>'
        for s, n in report.counts().items()
    )
    findings = "\n".join(_finding(f, rules) for f in report.findings) or "<p>No findings.</p>"
    skipped = ""
    if report.skipped:
        rows = "".join(f"<tr><td class=loc>{escape(s.path)}</td><td>{escape(s.reason)}</td></tr>"
                       for s in report.skipped)
        skipped = (f"<details><summary>{len(report.skipped)} skipped</summary>"
                   f"<table>{rows}</table></details>")
    notes = "".join(f"<p class=meta>{escape(n)}</p>" for n in report.notes)
    stats = report.stats
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Bastion report</title><style>{_CSS}</style></head>
<body>
<h1>Bastion report</h1>
<p class="meta">Bastion {escape(report.tool_version)} · {escape(report.started.isoformat())} ·
scanned {escape(", ".join(report.roots))} · {stats.files} files, {stats.analyzed} analysed,
{stats.seconds:.2f}s</p>
<p>{verdict} &nbsp;{len(report.failing)} finding(s) at or above
<b>{escape(report.fail_on.value)}</b></p>
<div class="counts">{counts}</div>
{notes}
<h2>Findings</h2>
{findings}
{skipped}
</body></html>
"""
