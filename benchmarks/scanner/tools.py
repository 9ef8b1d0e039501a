"""How each scanner is invoked and how its output becomes a verdict.

Each tool runs as a whole process (what a user or a CI job runs). Output is parsed into an
``Outcome``:

* ``flagged``      the tool's own "unsafe / issues found" verdict (see VERDICTS below);
* ``clean``        the tool scanned the file and reported nothing at its verdict threshold;
* ``unsupported``  the tool scanned nothing (format not handled, file skipped);
* ``error``        the tool reported a scan/parse error and no verdict;
* ``crash``        an unhandled exception or unparseable output;
* ``timeout``      killed after the per-invocation limit.

``level`` normalises each tool's severities onto high / medium / low / none, so that a
"strict" view (high only) can be compared across tools as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAIN = Path("/work/main")
ANCHORS = MAIN / "benchmarks" / ".venv-anchors" / "bin"
LEVELS = ("none", "low", "medium", "high")

# How each tool's verdict is read (documented in the README too).
VERDICTS = {
    "bastion": "any finding of severity high or critical (JSON report); medium findings are "
               "counted separately",
    "modelscan": "any issue in the JSON report (exit 1); exit 3 / nothing scanned = unsupported; "
                 "exit 2 with no issue = error",
    "picklescan": "'Dangerous globals' > 0 in the summary (exit 1); suspicious globals counted "
                  "as medium; 'Scanned files: 0' = unsupported; exit 2 with no dangerous "
                  "global = error",
    "fickling": "--check-safety exit 1 (severity above LIKELY_SAFE); exit 2 (cannot parse "
                "as pickle) = error; a traceback = crash",
    "modelaudit": "any WARNING or CRITICAL issue or failed security check in the JSON report "
                  "(its own definition of exit 1, read from JSON because operational errors "
                  "take precedence in its exit code); files_scanned 0 = unsupported",
}


@dataclass
class Outcome:
    outcome: str
    level: str = "none"
    detail: str = ""


def _max_level(levels: list[str]) -> str:
    return max(levels, key=LEVELS.index, default="none")


def _load_json(text: str) -> object | None:
    """The first JSON document in ``text`` (tools may print log lines before it)."""
    docs = _load_all_json(text)
    return docs[0] if docs else None


def _load_all_json(text: str) -> list[object]:
    """Every concatenated JSON object in ``text`` (fickling appends one per pickle)."""
    decoder, docs, pos = json.JSONDecoder(), [], text.find("{")
    while 0 <= pos < len(text):
        try:
            doc, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            break
        docs.append(doc)
        pos = text.find("{", end)
    return docs


# -- Bastion ------------------------------------------------------------------------------

_BASTION_LEVEL = {"critical": "high", "high": "high", "medium": "medium", "low": "low",
                  "info": "none"}


def bastion_argv(path: Path, work: Path) -> list[str]:
    return [str(MAIN / ".venv" / "bin" / "bastion"), "scan", str(path), "--format", "json",
            "-q", "-o", str(work / "report.json")]


def bastion_parse(rc: int, out: str, err: str, work: Path) -> Outcome:
    report = work / "report.json"
    doc = _load_json(report.read_text(errors="replace")) if report.exists() else None
    if not isinstance(doc, dict) or "findings" not in doc:
        return Outcome("crash", detail=f"rc={rc} {err.strip()[-200:]}")
    findings = doc["findings"]
    levels = [_BASTION_LEVEL.get(f.get("severity", ""), "none") for f in findings]
    level = _max_level(levels)
    rules = sorted({f["rule_id"] for f in findings
                    if _BASTION_LEVEL.get(f.get("severity", "")) in ("high", "medium")})
    if level == "high":
        return Outcome("flagged", level, ",".join(rules))
    if rc not in (0, 1):
        return Outcome("error", level, f"rc={rc}")
    return Outcome("clean", level, ",".join(rules))


# -- ModelScan ----------------------------------------------------------------------------

_MODELSCAN_LEVEL = {"CRITICAL": "high", "HIGH": "high", "MEDIUM": "medium", "LOW": "low"}


def modelscan_argv(path: Path, work: Path) -> list[str]:
    return [str(ANCHORS / "modelscan"), "scan", "-p", str(path), "-r", "json",
            "-o", str(work / "report.json")]


def modelscan_parse(rc: int, out: str, err: str, work: Path) -> Outcome:
    report = work / "report.json"
    doc = _load_json(report.read_text(errors="replace")) if report.exists() else None
    if not isinstance(doc, dict):
        kind = "crash" if "Traceback" in err + out else "error"
        return Outcome(kind, detail=f"rc={rc} {(err or out).strip()[-200:]}")
    issues = doc.get("issues") or []
    errors = doc.get("errors") or []
    scanned = (doc.get("summary", {}).get("scanned") or {}).get("total_scanned", 0)
    level = _max_level([_MODELSCAN_LEVEL.get(i.get("severity", ""), "low") for i in issues])
    ops = sorted({f"{i.get('module')}.{i.get('operator')}" for i in issues})
    if issues:
        return Outcome("flagged", level, ",".join(ops)[:200])
    if errors:
        return Outcome("error", detail="; ".join(str(e.get("description", e))[:120]
                                                 for e in errors[:2]))
    if rc == 3 or not scanned:
        return Outcome("unsupported")
    return Outcome("clean") if rc == 0 else Outcome("error", detail=f"rc={rc}")


# -- picklescan ---------------------------------------------------------------------------

def picklescan_argv(path: Path, work: Path) -> list[str]:
    return [str(ANCHORS / "picklescan"), "--path", str(path)]


def _count(pattern: str, text: str) -> int | None:
    m = re.search(pattern + r":\s*(\d+)", text)
    return int(m.group(1)) if m else None


def picklescan_parse(rc: int, out: str, err: str, work: Path) -> Outcome:
    text = out + err
    dangerous = _count("Dangerous globals", text)
    suspicious = _count("Suspicious globals", text) or 0
    scanned = _count("Scanned files", text)
    found = sorted(set(re.findall(r"dangerous import '([^']+)'", text)))
    if dangerous is None:
        kind = "crash" if "Traceback" in text or "Unhandled exception" in text else "error"
        return Outcome(kind, detail=f"rc={rc} {text.strip()[-200:]}")
    if dangerous > 0:
        return Outcome("flagged", "high", ",".join(found)[:200])
    level = "medium" if suspicious else "none"
    if rc == 2 or "ERROR" in text:
        msg = re.search(r"ERROR:?\s*(.*)", text)
        return Outcome("error", level, msg.group(1)[:160] if msg else f"rc={rc}")
    if not scanned:
        return Outcome("unsupported", level)
    return Outcome("clean", level, f"suspicious={suspicious}" if suspicious else "")


# -- fickling -----------------------------------------------------------------------------

_FICKLING_LEVEL = {"LIKELY_SAFE": "none", "POSSIBLY_UNSAFE": "medium", "SUSPICIOUS": "medium",
                   "LIKELY_UNSAFE": "high", "LIKELY_OVERTLY_MALICIOUS": "high",
                   "OVERTLY_MALICIOUS": "high"}


def fickling_argv(path: Path, work: Path) -> list[str]:
    return [str(ANCHORS / "fickling"), "--check-safety", "--json-output",
            str(work / "report.json"), str(path)]


def fickling_parse(rc: int, out: str, err: str, work: Path) -> Outcome:
    if "Traceback" in err:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        return Outcome("crash", detail=last[:200])
    report = work / "report.json"
    docs = _load_all_json(report.read_text(errors="replace")) if report.exists() else []
    sevs = [d.get("severity", "") for d in docs if isinstance(d, dict)]
    sev = max(sevs, key=lambda s: list(_FICKLING_LEVEL).index(s) if s in _FICKLING_LEVEL
              else -1, default="")
    if rc == 1:
        return Outcome("flagged", _FICKLING_LEVEL.get(sev, "high"), sev)
    if rc == 0:
        return Outcome("clean", _FICKLING_LEVEL.get(sev, "none"), sev)
    first = err.strip().splitlines()[0] if err.strip() else f"rc={rc}"
    return Outcome("error", detail=first[:200])


# -- modelaudit ---------------------------------------------------------------------------

_MODELAUDIT_LEVEL = {"critical": "high", "warning": "medium", "info": "low", "debug": "none"}


def modelaudit_argv(path: Path, work: Path) -> list[str]:
    return [str(ANCHORS / "modelaudit"), "scan", "--format", "json", "--no-cache",
            "--output", str(work / "report.json"), str(path)]


def modelaudit_parse(rc: int, out: str, err: str, work: Path) -> Outcome:
    report = work / "report.json"
    doc = _load_json(report.read_text(errors="replace")) if report.exists() else None
    if not isinstance(doc, dict):
        doc = _load_json(out)
    if not isinstance(doc, dict):
        kind = "crash" if "Traceback" in err + out else "error"
        return Outcome(kind, detail=f"rc={rc} {(err or out).strip()[-200:]}")
    records = [(i.get("severity", ""), i.get("message", "")) for i in doc.get("issues") or []]
    records += [(c.get("severity", ""), c.get("message", "")) for c in doc.get("checks") or []
                if c.get("status") == "failed"]
    level = _max_level([_MODELAUDIT_LEVEL.get(str(s).lower(), "none") for s, _ in records])
    # critical messages first: they are what the "high/critical only" rows count
    security = sorted({(str(s).lower() != "critical", m[:80]) for s, m in records
                       if str(s).lower() in ("warning", "critical")})
    security_msgs = [m for _, m in security]
    if level in ("high", "medium"):
        return Outcome("flagged", level, " | ".join(security_msgs)[:300])
    notes = " | ".join(sorted({m[:80] for _, m in records}))[:200]
    if doc.get("has_errors"):
        return Outcome("error", level, f"rc={rc} {notes}")
    if not doc.get("files_scanned"):
        return Outcome("unsupported", level, notes)
    if rc == 0:
        return Outcome("clean", level, notes)
    # exit 2 without a security finding: errors or "coverage incomplete" (inconclusive)
    return Outcome("error", level, f"rc={rc} inconclusive: {notes}")


@dataclass(frozen=True)
class Tool:
    name: str
    argv: Callable[[Path, Path], list[str]]
    parse: Callable[[int, str, str, Path], Outcome]
    folders: bool = True  # accepts a folder in one process


TOOLS: dict[str, Tool] = {
    "bastion": Tool("bastion", bastion_argv, bastion_parse),
    "modelscan": Tool("modelscan", modelscan_argv, modelscan_parse),
    "picklescan": Tool("picklescan", picklescan_argv, picklescan_parse),
    "fickling": Tool("fickling", fickling_argv, fickling_parse, folders=False),
    "modelaudit": Tool("modelaudit", modelaudit_argv, modelaudit_parse),
}
