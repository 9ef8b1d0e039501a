"""From measurements to findings, a plain-language summary and the documents.

Each measurement is held against its policy threshold (:class:`AssessSettings`); what crosses
one becomes a :class:`~bastion.findings.Finding` of the assessment's rules, and goes through
the policy's severity overrides and ignores like any scan finding. What could not be measured
becomes an ``ASSESS-NOT-ASSESSED`` (info) finding, and an attack that failed an
``ASSESS-ATTACK-ERROR`` one, so no report is silently partial.

Formats: ``json`` is the shared report (``Report.to_dict()``, schema 1.0) with the
measurements under ``assessment``; ``sarif`` is the shared SARIF renderer; ``html`` is the
one-file report of :mod:`bastion.assess.html` (plots included); ``terminal`` prints the
measurements, then the findings as ``bastion scan`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bastion import __version__
from bastion.assess import rules
from bastion.findings import Finding, Location, Report, ScanStats
from bastion.policy import Policy, apply_policy

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from bastion.assess.run import Assessment


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def assessment_findings(assessment: Assessment) -> list[Finding]:
    """The findings of one assessment, before the policy's overrides and ignores."""
    settings = assessment.settings
    where = Location(path=assessment.target)
    out: list[Finding] = []
    robustness = assessment.robustness
    if robustness is not None:
        eps = settings.robustness_epsilon
        worst = robustness.worst(eps)
        if worst is not None and worst.robust_accuracy < settings.min_robust_accuracy:
            points = robustness.at(eps)
            sample_note = (f" (estimated on {worst.samples} samples)"
                           if worst.attack == "HopSkipJump" else "")
            out.append(rules.ROBUSTNESS_LOW.finding(
                where,
                f"{worst.attack} with perturbations of at most ε={eps:g} of the input range "
                f"leaves {_pct(worst.robust_accuracy)} accuracy{sample_note} (clean "
                f"{_pct(robustness.clean_accuracy)}); the policy requires at least "
                f"{_pct(settings.min_robust_accuracy)}",
                evidence="; ".join(
                    f"{p.attack}: robust accuracy {_pct(p.robust_accuracy)}, attack success "
                    f"{_pct(p.success_rate)}, mean L∞ {p.mean_linf:.3f}, {p.samples} samples"
                    for p in points),
                properties={"epsilon": eps, "attack": worst.attack,
                            "robust_accuracy": worst.robust_accuracy,
                            "clean_accuracy": robustness.clean_accuracy,
                            "threshold": settings.min_robust_accuracy},
            ))
        out.extend(_gaps(where, robustness.not_assessed, robustness.errors))
    privacy = assessment.privacy
    if privacy is not None:
        strongest = privacy.strongest
        sharpest = max(privacy.attacks, key=lambda a: a.tpr_at_1, default=None)
        if strongest is not None and sharpest is not None and (
                strongest.auc > settings.max_membership_auc
                or sharpest.tpr_at_1 > settings.max_membership_tpr):
            out.append(rules.MEMBERSHIP_LEAK.finding(
                where,
                f"membership inference ({strongest.name}) reaches AUC {strongest.auc:.3f}; "
                f"the sharpest attack ({sharpest.name}) finds {_pct(sharpest.tpr_at_1)} of "
                f"members at 1% false positives (policy: AUC ≤ "
                f"{settings.max_membership_auc:g}, TPR ≤ {_pct(settings.max_membership_tpr)})",
                evidence="; ".join(
                    f"{a.name}: AUC {a.auc:.3f}, TPR {_pct(a.tpr_at_1)} at 1% FPR, "
                    f"{_pct(a.tpr_at_0_1)} at 0.1% FPR" for a in privacy.attacks)
                + (f"; accuracy on members {_pct(privacy.train_accuracy)}, on unseen records "
                   f"{_pct(privacy.test_accuracy)}" if privacy.train_accuracy is not None
                   and privacy.test_accuracy is not None else ""),
                properties={"auc": strongest.auc, "attack": strongest.name,
                            "tpr_at_1pct_fpr": sharpest.tpr_at_1,
                            "members": strongest.members, "nonmembers": strongest.nonmembers,
                            "max_auc": settings.max_membership_auc,
                            "max_tpr": settings.max_membership_tpr},
            ))
        attribute = privacy.attribute
        if attribute is not None and attribute.advantage > settings.max_attribute_advantage:
            out.append(rules.ATTRIBUTE_LEAK.finding(
                where,
                f"attribute inference recovers feature {attribute.feature} of training "
                f"records with {_pct(attribute.attack_accuracy)} accuracy, against "
                f"{_pct(attribute.baseline_accuracy)} without the model (advantage "
                f"{_pct(attribute.advantage)}; policy ≤ "
                f"{_pct(settings.max_attribute_advantage)})",
                properties=attribute.to_dict(),
            ))
        out.extend(_gaps(where, privacy.not_assessed, privacy.errors))
    extraction = assessment.extraction
    if extraction is not None:
        first = extraction.first_reaching(settings.max_extraction_fidelity)
        if first is not None:
            out.append(rules.EXTRACTION_EASY.finding(
                where,
                f"a copycat trained on the model's answers to {first.queries} queries agrees "
                f"with it on {_pct(first.fidelity)} of unseen inputs (policy: below "
                f"{_pct(settings.max_extraction_fidelity)} within "
                f"{settings.max_queries} queries)",
                evidence="; ".join(f"{p.queries} queries: fidelity {_pct(p.fidelity)}"
                                   for p in extraction.points),
                properties={"queries": first.queries, "fidelity": first.fidelity,
                            "threshold": settings.max_extraction_fidelity,
                            "max_queries": settings.max_queries},
            ))
        out.extend(_gaps(where, (), extraction.errors))
    out.extend(_gaps(where, (), assessment.errors))
    return out


def _gaps(where: Location, not_assessed: Iterable[str], errors: Iterable[str]) -> list[Finding]:
    return [*(rules.NOT_ASSESSED.finding(where, text) for text in not_assessed),
            *(rules.ATTACK_ERROR.finding(where, text) for text in errors)]


def build_report(assessment: Assessment, policy: Policy, *, policy_source: str = "",
                 started: datetime | None = None) -> Report:
    """The shared :class:`Report` of an assessment, the policy applied."""
    findings = sorted(apply_policy(assessment_findings(assessment), policy,
                                   source=policy_source),
                      key=lambda f: -f.severity.rank)  # grouped by severity, as scan reports
    return Report(
        tool_version=__version__, started=started or datetime.now(UTC),
        roots=(assessment.target,), fail_on=policy.fail_on, findings=tuple(findings),
        stats=ScanStats(files=1, analyzed=1, seconds=round(assessment.seconds, 3)),
        notes=(f"assessed {assessment.description or assessment.family} on {assessment.data}: "
               f"{assessment.holdout_samples} unseen samples, {assessment.member_samples} "
               f"training samples, {assessment.queries} queries"
               + (f", {assessment.endpoint.answered} answered by the gateway"
                  if assessment.endpoint else "")
               + (f", blocked as extraction after {assessment.endpoint.blocked_after}"
                  if assessment.endpoint and assessment.endpoint.blocked_after is not None
                  else ""),),
    )


# -- plain language ------------------------------------------------------------------------------


def _strength(auc: float) -> str:
    if auc < 0.55:
        return "no better than a coin flip"
    if auc < 0.6:
        return "a little better than a coin flip"
    if auc < 0.7:
        return "noticeably better than chance"
    if auc < 0.85:
        return "clearly better than chance: a real leak"
    return "almost perfectly: a severe leak"


def summary(assessment: Assessment) -> list[str]:
    """A few sentences a product owner can read without knowing the attacks."""
    lines: list[str] = []
    settings = assessment.settings
    robustness = assessment.robustness
    if robustness is not None:
        eps = settings.robustness_epsilon
        worst = robustness.worst(eps)
        if worst is not None:
            verdict = ("below" if worst.robust_accuracy < settings.min_robust_accuracy
                       else "above")
            lines.append(
                f"Robustness: changing each input value by at most {eps * 100:g}% of its range "
                f"brings the model's accuracy from {_pct(robustness.clean_accuracy)} down to "
                f"{_pct(worst.robust_accuracy)} ({worst.attack}), {verdict} the required "
                f"{_pct(settings.min_robust_accuracy)}.")
        found = [v for v in robustness.blackbox_linf if v > 0]
        if found:
            found.sort()
            median = found[len(found) // 2]
            lines.append(
                f"With queries only (no access to the weights), HopSkipJump fooled the model on "
                f"{len(found)} of {robustness.blackbox_samples} samples with a median change of "
                f"{median * 100:.1f}% of the input range.")
    privacy = assessment.privacy
    if privacy is not None and privacy.strongest is not None:
        best = privacy.strongest
        sharpest = max(privacy.attacks, key=lambda a: a.tpr_at_1)
        lines.append(
            f"Privacy: the best membership-inference attack ({best.name}) tells the model's "
            f"training records from unseen ones {_strength(best.auc)} (AUC {best.auc:.2f}; 0.5 "
            f"is guessing). Allowed 1% false alarms, it identifies {_pct(sharpest.tpr_at_1)} "
            f"of the training records.")
        if privacy.train_accuracy is not None and privacy.test_accuracy is not None:
            gap = privacy.train_accuracy - privacy.test_accuracy
            if gap > 0.05:
                lines.append(f"The model is {_pct(privacy.train_accuracy)} accurate on its "
                             f"training records but {_pct(privacy.test_accuracy)} on unseen "
                             "ones: it memorises, which is what these attacks exploit.")
    elif privacy is not None:
        lines.append("Privacy: not assessed — " + "; ".join(privacy.not_assessed[:1]) + ".")
    extraction = assessment.extraction
    if extraction is not None and extraction.points:
        first, last = extraction.points[0], extraction.points[-1]
        lines.append(
            f"Extraction: a copy trained only on the model's answers agrees with it on "
            f"{_pct(first.fidelity)} of unseen inputs after {first.queries} queries and "
            f"{_pct(last.fidelity)} after {last.queries} (the model itself is "
            f"{_pct(extraction.victim_accuracy)} accurate).")
    lines.append(f"The assessment sent {assessment.queries:,} queries in "
                 f"{assessment.seconds:.1f} s.")
    endpoint = assessment.endpoint
    if endpoint is not None:
        lines.append(f"The gateway answered {endpoint.answered:,} queries in "
                     f"{endpoint.requests:,} requests"
                     + (f" and refused {endpoint.refused:,}" if endpoint.refused else "")
                     + (f"; {endpoint.waited:.0f} s were spent waiting on its quota"
                        if endpoint.waited >= 1 else "") + ".")
        words = {"blocked_extraction": "blocked the assessment as a model-extraction attempt",
                 "blocked_adversarial": "refused inputs as adversarial",
                 "rate_limited": "ran out of quota for the assessment"}
        for code, answered, _message in endpoint.refusals:
            lines.append(f"The gateway {words.get(code, f'refused queries ({code})')} after "
                         f"{answered:,} answered queries.")
    return lines


def summary_line(report: Report, assessment: Assessment) -> Text:
    """The verdict in one line, for standard error."""
    from rich.text import Text

    failing = len(report.failing)
    line = Text()
    line.append(" FAILED " if failing else " PASSED ",
                style="bold white on red" if failing else "bold white on green")
    line.append(f"  {failing} finding{'s' if failing != 1 else ''} at or above "
                f"{report.fail_on.value}")
    parts = [f"{n} {sev.value}" for sev, n in report.counts().items() if n]
    if parts:
        line.append(" — " + ", ".join(parts))
    line.append(f" · {assessment.target}: {assessment.queries:,} queries in "
                f"{assessment.seconds:.1f}s", style="dim")
    return line


# -- documents -----------------------------------------------------------------------------------


def render_json(report: Report, assessment: Assessment) -> str:
    from bastion.report.json import render_json as render_report

    data = json.loads(render_report(report, {}))
    data["assessment"] = assessment.to_dict()
    data["assessment"]["summary"] = summary(assessment)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def print_assessment(report: Report, assessment: Assessment, console: Console) -> None:
    """The measurements as tables, the summary, then the findings as ``bastion scan``
    prints them."""
    from rich.table import Table
    from rich.text import Text

    from bastion.report.terminal import print_report

    console.print(Text(f"Assessment of {assessment.target} ({assessment.family})",
                       style="bold"))
    robustness = assessment.robustness
    if robustness is not None and robustness.points:
        table = Table(title=f"Robustness (clean accuracy {_pct(robustness.clean_accuracy)})",
                      title_justify="left")
        for column in ("attack", "ε", "robust acc.", "success", "mean L∞", "samples",
                       "queries"):
            table.add_column(column, justify="left" if column == "attack" else "right")
        for p in robustness.points:
            table.add_row(p.attack, f"{p.epsilon:g}", _pct(p.robust_accuracy),
                          _pct(p.success_rate), f"{p.mean_linf:.3f}", str(p.samples),
                          str(p.queries))
        console.print(table)
    privacy = assessment.privacy
    if privacy is not None and privacy.attacks:
        table = Table(title="Membership inference", title_justify="left")
        for column in ("attack", "AUC", "TPR @ 0.1% FPR", "TPR @ 1% FPR", "records",
                       "queries"):
            table.add_column(column, justify="left" if column == "attack" else "right")
        for a in privacy.attacks:
            table.add_row(a.name, f"{a.auc:.3f}", _pct(a.tpr_at_0_1), _pct(a.tpr_at_1),
                          f"{a.members}+{a.nonmembers}", str(a.queries))
        console.print(table)
    extraction = assessment.extraction
    if extraction is not None and extraction.points:
        table = Table(title="Extraction (copycat)", title_justify="left")
        for column in ("queries", "fidelity", "copy accuracy"):
            table.add_column(column, justify="right")
        for e in extraction.points:
            table.add_row(str(e.queries), _pct(e.fidelity), _pct(e.accuracy))
        console.print(table)
    for line in summary(assessment):
        console.print(Text(line))
    console.print()
    print_report(report, {}, console)


__all__ = ["assessment_findings", "build_report", "print_assessment", "render_json",
           "summary", "summary_line"]
