"""Severity from CVSS vectors: the v3.x base score computed from the vector, v4 mapped.

The v3.0/v3.1 base score is a dozen lines of arithmetic (FIRST's specification, section 7),
so it is computed here rather than trusting a ``score`` field that OSV does not carry. For
v4 no small exact formula exists (it is a lookup over macro-vectors), so the vector is
mapped *conservatively*: rounding towards the worse band, never the milder one.
"""

from __future__ import annotations

import math

from bastion.findings import Severity

_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}


def _metrics(vector: str) -> dict[str, str]:
    parts = vector.strip().split("/")
    return dict(p.split(":", 1) for p in parts[1:] if ":" in p)


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup: the smallest one-decimal number >= value, float-error safe."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000.0
    return (math.floor(scaled / 10_000) + 1) / 10.0


def cvss3_base_score(vector: str) -> float | None:
    """The base score of a ``CVSS:3.x/AV:../..`` vector, or None when it is malformed."""
    if not vector.startswith(("CVSS:3.0/", "CVSS:3.1/")):
        return None
    m = _metrics(vector)
    try:
        changed = {"U": False, "C": True}[m["S"]]
        pr = (_PR_CHANGED if changed else _PR_UNCHANGED)[m["PR"]]
        exploitability = 8.22 * _AV[m["AV"]] * _AC[m["AC"]] * pr * _UI[m["UI"]]
        iss = 1 - (1 - _CIA[m["C"]]) * (1 - _CIA[m["I"]]) * (1 - _CIA[m["A"]])
    except KeyError:
        return None
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    if impact <= 0:
        return 0.0
    total = impact + exploitability
    return _roundup(min(1.08 * total if changed else total, 10.0))


def score_severity(score: float) -> Severity:
    """The CVSS qualitative rating (none maps to info)."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.0:
        return Severity.LOW
    return Severity.INFO


def cvss4_severity(vector: str) -> Severity | None:
    """A conservative band for a ``CVSS:4.0/...`` vector (never milder than its score).

    High impact on the vulnerable or a subsequent system that needs no privileges, no user
    action and reaches over the network is critical; any other high impact is high; any
    low impact medium; nothing at all low.
    """
    if not vector.startswith("CVSS:4.0/"):
        return None
    m = _metrics(vector)
    impacts = [m.get(k, "N") for k in ("VC", "VI", "VA", "SC", "SI", "SA")]
    if not all(k in m for k in ("AV", "AC", "PR", "UI", "VC", "VI", "VA")):
        return None
    if "H" in impacts:
        easy = m["AV"] == "N" and m["PR"] == "N" and m["UI"] == "N"
        return Severity.CRITICAL if easy else Severity.HIGH
    if "L" in impacts:
        return Severity.MEDIUM
    return Severity.LOW


def vector_severity(kind: str, vector: str) -> Severity | None:
    """Severity of one OSV ``severity`` entry (``CVSS_V3`` / ``CVSS_V4``), else None."""
    if kind == "CVSS_V3":
        score = cvss3_base_score(vector)
        return None if score is None else score_severity(score)
    if kind == "CVSS_V4":
        return cvss4_severity(vector)
    return None
