"""Supply-chain benchmarks: audit speed, database import, and pip-audit / GuardDog side by side.

    bash benchmarks/supply/setup.sh              # pip-audit + GuardDog venv (once)
    .venv/bin/python benchmarks/supply/run.py    # everything below (--runs 5 by default)

(a) builds a 500-package environment (envgen.py): a requirements file of exact pins and a
    site-packages folder of 500 ``*.dist-info/METADATA``; (b) times ``bastion audit`` warm from
    the local index, as a whole process and in-process; (c) times ``bastion db update`` of the
    full advisory snapshot; (d) runs pip-audit (offline, in a network namespace with no
    network; and once online on three pins, a few registry look-ups) and GuardDog's local
    scan next to Bastion on harmless malicious samples (samples.py).

Every timing is run N times after one warm-up; the table shows the median and the minimum and
the load average (the machine is shared). Markdown goes to stdout and results.md; raw records
to out/results.json (gitignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import envgen  # noqa: E402
import samples as sample_kit  # noqa: E402

OUT = HERE / "out"
BASTION = str(REPO / ".venv" / "bin" / "bastion")
TOOLS = REPO / "benchmarks" / ".venv-supply" / "bin"
ADVISORY_DB = REPO.parent / "shared" / "advisory-db"
DB = OUT / "advisories.sqlite"
ENV = {**os.environ, "BASTION_DB": str(DB), "XDG_CACHE_HOME": str(OUT / "cache"),
       "NO_COLOR": "1", "PYTHONWARNINGS": "ignore", "SEMGREP_SEND_METRICS": "off",
       # Byte-code cached, as in any installed package (this workplace sets
       # PYTHONDONTWRITEBYTECODE, which makes every start compile every module again).
       "PYTHONPYCACHEPREFIX": str(OUT / "pycache")}
ENV.pop("PYTHONDONTWRITEBYTECODE", None)
SMALL = "torch==1.13.0\nctx==0.2.6\nsix==1.16.0\n"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(cmd: Sequence[str], *, offline: bool = False, timeout: float = 600) -> dict[str, Any]:
    """Run a command; wall time, exit code and output (offline: in a namespace, no network)."""
    if offline:
        cmd = [*NO_NET, *cmd]
    clock = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return {"cmd": " ".join(cmd), "rc": proc.returncode, "s": time.perf_counter() - clock,
            "stdout": proc.stdout, "stderr": proc.stderr}


def _no_network() -> list[str]:
    """``unshare -n`` (root) gives a process no network at all; else a dead proxy."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], check=False,
                                  capture_output=True).returncode == 0:
        return [unshare, "-n"]
    ENV.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    return []


NO_NET = _no_network()


def series(label: str, once: Callable[[], float], runs: int) -> dict[str, Any]:
    """One warm-up, then ``runs`` timed runs: median, min, and the load while it ran."""
    before = load()
    once()
    times = [once() for _ in range(runs)]
    row = {"label": label, "median": statistics.median(times), "min": min(times),
           "runs": runs, "load": f"{before} → {load()}", "times": times}
    print(f"  {label}: median {row['median']:.3f} s, min {row['min']:.3f} s "
          f"(load {row['load']})", file=sys.stderr)
    return row


def proc_time(cmd: Sequence[str], ok: Sequence[int] = (0, 1)) -> Callable[[], float]:
    def once() -> float:
        result = run(cmd)
        if result["rc"] not in ok:
            raise SystemExit(f"{result['cmd']} failed ({result['rc']}): {result['stderr'][-800:]}")
        return float(result["s"])
    return once


def timings(runs: int, requirements: Path, site: Path, skip_db: bool) -> list[dict[str, Any]]:
    from bastion.supply.advisories.store import AdvisoryStore
    from bastion.supply.audit import audit

    rows = []
    if not skip_db:
        rows.append(series(f"`bastion db update` full snapshot ({ADVISORY_DB.name}, whole process)",
                           proc_time([BASTION, "db", "update", str(ADVISORY_DB), "--db",
                                      str(OUT / "db-import.sqlite")], ok=(0,)), runs))
    report = OUT / "audit.json"
    rows.append(series("`bastion audit requirements.txt` (500 pins, whole process)",
                       proc_time([BASTION, "audit", str(requirements), "-f", "json", "-o",
                                  str(report), "-q"]), runs))
    rows.append(series("`bastion audit site-packages/` (500 dist-info, whole process)",
                       proc_time([BASTION, "audit", str(site), "-f", "json", "-o",
                                  str(OUT / "audit-site.json"), "-q"]), runs))

    def fresh() -> float:
        clock = time.perf_counter()
        store = AdvisoryStore.open(DB)
        audit([str(requirements)], store)
        store.close()
        return time.perf_counter() - clock

    store = AdvisoryStore.open(DB)

    def warm() -> float:
        clock = time.perf_counter()
        audit([str(requirements)], store)
        return time.perf_counter() - clock

    rows.append(series("`audit()` in-process, store opened each run", fresh, runs))
    rows.append(series("`audit()` in-process, store kept open (parsed records cached)", warm,
                       runs))
    rows.append(series("`bastion sbom` requirements + site-packages (CycloneDX, whole process)",
                       proc_time([BASTION, "sbom", str(requirements), str(site), "--no-scan",
                                  "-o", str(OUT / "sbom.json"), "-q"]), runs))
    rows.append(series("`bastion --version` (process start-up floor)",
                       proc_time([BASTION, "--version"], ok=(0,)), runs))
    return rows


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:220] if lines else ""


def _bastion_ids(report: dict[str, Any]) -> set[str]:
    ids = set()
    for finding in report.get("findings", []):
        for vuln in finding.get("properties", {}).get("vulnerabilities", []) or []:
            ids.update([vuln["id"], *vuln.get("aliases", [])])
    return ids


def pip_audit(requirements: Path, small: Path, online: bool) -> list[dict[str, Any]]:
    """pip-audit has no local database: offline it stops at its first query."""
    tool = str(TOOLS / "pip-audit")
    base = ["--no-deps", "--disable-pip", "--progress-spinner", "off", "-f", "json",
            "--cache-dir", str(OUT / "pip-audit-cache")]
    rows = []
    for label, path in (("500 pins, offline", requirements), ("3 pins, offline", small)):
        result = run([tool, "-r", str(path), *base], offline=True)
        rows.append({"input": label, "rc": result["rc"], "s": result["s"],
                     "says": _last_error(result["stderr"] or result["stdout"])})
    if online:  # three look-ups on the registry, to show what it finds when it can
        result = run([tool, "-r", str(small), *base])
        rows.append({"input": "3 pins, online", "rc": result["rc"], "s": result["s"],
                     "says": _pip_audit_says(result)})
    bastion = run([BASTION, "audit", str(small), "-f", "json", "-q"], offline=True)
    report = json.loads(bastion["stdout"])
    ids = _bastion_ids(report)
    rules = sorted({f"{f['rule_id']} ({f['properties'].get('package')})"
                    for f in report["findings"] if f["properties"].get("vulnerabilities")})
    rows.append({"input": "3 pins, offline — Bastion", "rc": bastion["rc"], "s": bastion["s"],
                 "says": f"{len(ids)} ids: {', '.join(sorted(ids))}; {', '.join(rules)}"})
    big = json.loads((OUT / "audit.json").read_text(encoding="utf-8"))
    rows.append({"input": "500 pins, offline — Bastion", "rc": 1, "s": float("nan"),
                 "says": f"{len(big['findings'])} findings, {len(_bastion_ids(big))} ids "
                         "(timings above)"})
    return rows


def _pip_audit_says(result: dict[str, Any]) -> str:
    """Vulnerability ids found, and the packages it skipped with its reason."""
    try:
        deps = json.loads(result["stdout"])["dependencies"]
    except (ValueError, KeyError, TypeError):
        return _last_error(result["stderr"])
    ids = sorted({i for d in deps for v in d.get("vulns", []) for i in [v["id"],
                                                                         *v.get("aliases", [])]})
    skipped = [f"{d['name']}: {d['skip_reason']}" for d in deps if d.get("skip_reason")]
    text = f"{len(ids)} ids" + (f": {', '.join(ids[:6])}" if ids else "")
    return text + (f"; skipped {len(skipped)}: {skipped[0]}" if skipped else "")


def _guarddog(path: Path) -> tuple[str, float]:
    result = run([str(TOOLS / "guarddog"), "pypi", "scan", str(path), "--output-format", "json",
                  "--no-sandbox"], offline=True)
    try:
        data = json.loads(result["stdout"])
    except ValueError:
        return f"error: {_last_error(result['stderr'])}", result["s"]
    hits = sorted(k for k, v in data.get("results", {}).items() if v)
    threats = sorted(k for k in hits if k.startswith(("threat", "typosquat", "bundled")))
    label = data.get("risk_score", {}).get("label", "")
    shown = ", ".join(threats) or (f"capabilities only: {', '.join(hits)}" if hits else "nothing")
    return f"{label}: {shown}" if label else shown, result["s"]


def _bastion_scan(path: Path) -> tuple[str, float]:
    result = run([BASTION, "scan", str(path), "-f", "json", "-q"], offline=True)
    try:
        data = json.loads(result["stdout"])
    except ValueError:
        return f"error: {_last_error(result['stderr'])}", result["s"]
    rules = sorted({f"{f['rule_id']} ({f['severity']})" for f in data["findings"]
                    if f["severity"] not in ("info",)})
    return ", ".join(rules) or "nothing", result["s"]


def malicious(folder: Path, runs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kit = sample_kit.build(folder)
    rows = []
    for sample in kit:
        path = folder / sample.file
        bastion, bastion_s = _bastion_scan(path)
        guard, guard_s = _guarddog(path)
        rows.append({"sample": sample.file, "technique": sample.technique,
                     "malicious": sample.malicious, "bastion": bastion, "bastion_s": bastion_s,
                     "guarddog": guard, "guarddog_s": guard_s})
    typo = folder / "requirements-typo.txt"
    typo.write_text("reqeusts==2.32.3\nnumpy==1.26.4\n", encoding="utf-8")
    audit = run([BASTION, "audit", str(typo), "-f", "json", "-q"], offline=True)
    rules = sorted({f["rule_id"] for f in json.loads(audit["stdout"])["findings"]})
    rows.append({"sample": typo.name, "technique": "typosquat pinned in a requirements file",
                 "malicious": True, "bastion": ", ".join(rules) or "nothing",
                 "bastion_s": audit["s"], "guarddog": "n/a (scans packages, not manifests)",
                 "guarddog_s": 0.0})
    files = [folder / s.file for s in kit]
    speed = [
        series(f"Bastion `scan`, {len(files)} samples, one process each",
               lambda: sum(_bastion_scan(p)[1] for p in files), runs),
        series(f"GuardDog `pypi scan`, {len(files)} samples, one process each",
               lambda: sum(_guarddog(p)[1] for p in files), runs),
    ]
    return rows, speed


def markdown(info: dict[str, Any], rows: list[dict[str, Any]], pa: list[dict[str, Any]],
             mal: list[dict[str, Any]], speed: list[dict[str, Any]]) -> str:
    out = ["# Supply-chain benchmarks", "",
           f"Machine: {info['cpus']} CPUs, {info['platform']}, Python {info['python']}; "
           f"load average (1/5/15 min) {info['load_start']} at start, {info['load_end']} at "
           "the end: the machine was shared with other work, so times are upper bounds.",
           f"Environment: {info['packages']} exact pins ({info['vulnerable']} pinned to a "
           f"version an advisory lists as affected); audit found {info['findings']} findings. "
           f"Advisory database: {info['db']}.", "",
           f"## Timings (seconds; median and minimum of {info['runs']} runs after one warm-up)",
           "", "| what | median | min | load during the series |", "|---|---:|---:|---|"]
    out += [f"| {r['label']} | {r['median']:.3f} | {r['min']:.3f} | {r['load']} |"
            for r in [*rows, *speed]]
    goal = next((r for r in rows if r["label"].startswith("`bastion audit requirements")), None)
    if goal:
        verdict = "met" if goal["median"] < 1 else ("met at best" if goal["min"] < 1 else
                                                    "not met")
        out += ["", f"Goal (< 1 s warm audit of 500 packages, whole process): **{verdict}** "
                f"(median {goal['median']:.2f} s, min {goal['min']:.2f} s)."]
    out += ["", "## pip-audit on the same inputs", "",
            "pip-audit has no offline mode: every run queries PyPI's JSON API or OSV "
            "(`-s pypi|osv`), with at most an HTTP cache (`--cache-dir`) of earlier answers. "
            "Offline = run in a network namespace with no network (`unshare -n`). Online, this "
            "machine reaches the registry's package index only, not its JSON API, so pip-audit "
            "finds nothing to audit and still exits 0.", "",
            "| input | exit | seconds | what it reports |", "|---|---:|---:|---|"]
    out += [f"| {r['input']} | {r['rc']} | {r['s']:.2f} | {r['says'].replace('|', '/')} |"
            .replace("| nan |", "| — |") for r in pa]
    out += ["", "## Malicious-package samples: Bastion and GuardDog, both offline", "",
            "Harmless samples (samples.py): hosts under `.invalid`, commands `echo`; never "
            "installed. GuardDog: `guarddog pypi scan FILE --no-sandbox` (its threat rules "
            "and risk label; capability-only hits listed as such). Bastion: `bastion scan "
            "FILE` with the default analyzers.", "",
            "| sample | technique | should flag | Bastion | GuardDog |", "|---|---|---|---|---|"]
    out += [f"| {r['sample']} | {r['technique']} | {'yes' if r['malicious'] else 'no'} | "
            f"{r['bastion']} | {r['guarddog']} |" for r in mal]
    out += ["", info["heuristics_note"], ""]
    return "\n".join(out)


def _heuristics_note() -> str:
    """Say whether Bastion's malicious-package heuristics took part in this run."""
    present = (REPO / "src" / "bastion" / "supply" / "heuristics").is_dir()
    try:  # the tree may be mid-change; the note must not lose the measurements
        from bastion.catalogue import default_analyzers

        registered = [a.name for a in default_analyzers()
                      if "heuristics" in type(a).__module__]
    except Exception as exc:
        return f"(Could not read the analyzer catalogue: {type(exc).__name__}: {exc}.)"
    if registered:
        state = f"registered ({', '.join(registered)}): the Bastion column is their verdict"
    elif present:
        state = ("in the tree but not yet registered in the catalogue, so `bastion scan` ran "
                 "without them: the Bastion column shows the scanner without static package "
                 "heuristics, not their quality")
    else:
        state = "absent"
    return (f"Bastion's static malicious-package heuristics (src/bastion/supply/heuristics/) "
            f"were {state} when this ran. Known-malicious *releases* (OSV MAL- records, the "
            "`ctx` takeover) are found by the advisory audit (the 3-pin row above).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--packages", type=int, default=500)
    parser.add_argument("--skip-db", action="store_true", help="do not time the DB import")
    parser.add_argument("--no-network", action="store_true", help="skip pip-audit's online run")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(terse=True),
                            "python": platform.python_version(), "load_start": load(),
                            "runs": args.runs}
    if not DB.is_file():
        print("importing the advisory snapshot once for the benchmark database", file=sys.stderr)
        run([BASTION, "db", "update", str(ADVISORY_DB), "--db", str(DB)])
    projects = envgen.top_projects(args.packages)
    pins = envgen.pins(projects, DB)
    requirements, site = envgen.write(OUT / f"env{args.packages}", pins)
    small = OUT / "requirements-small.txt"
    small.write_text(SMALL, encoding="utf-8")
    print(f"timings ({args.runs} runs each):", file=sys.stderr)
    rows = timings(args.runs, requirements, site, args.skip_db)
    report = json.loads((OUT / "audit.json").read_text(encoding="utf-8"))
    info.update(packages=len(pins), vulnerable=sum(p.vulnerable for p in pins),
                findings=len(report["findings"]),
                db=next((n for n in report["notes"] if n.startswith("advisory database")),
                        "?").split(";")[0].removeprefix("advisory database: "))
    pa = pip_audit(requirements, small, online=not args.no_network)
    mal, speed = malicious(OUT / "samples", args.runs)
    info["heuristics_note"] = _heuristics_note()
    info["load_end"] = load()
    text = markdown(info, rows, pa, mal, speed)
    print(text)
    (HERE / "results.md").write_text(text, encoding="utf-8")
    (OUT / "results.json").write_text(json.dumps(
        {"info": info, "timings": rows, "pip_audit": pa, "malicious": mal, "speed": speed},
        indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
