"""Run Bastion and the anchor scanners on the corpus and print the comparison tables.

    bash benchmarks/scanner/setup.sh                         # anchors' venv (once)
    .venv/bin/python benchmarks/scanner/make_corpus.py       # corpus (once)
    .venv/bin/python benchmarks/scanner/run.py               # everything below

Each tool runs once per file as a whole process (wall time; peak RSS from GNU time where
present, else wait4), in a fresh working folder, with a per-invocation timeout. Tables:

  (a) detection per technique family per tool (tool's own verdict; see tools.VERDICTS)
  (b) false positives on the benign files per tool
  (c) whole-process time on the ~2 GB checkpoint, and the ratio to Bastion
  (d) time for the ~300-file folder (one process over the folder), and ratios

The Markdown goes to stdout and to benchmarks/scanner/results.md; raw per-run records go to
benchmarks/scanner/out/<report stem>.json (gitignored). ``--reuse`` takes the runs of the
tools not being run from such a file (e.g. rerun only Bastion after a change).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tools import ANCHORS, MAIN, TOOLS, VERDICTS, Outcome  # noqa: E402

ENV_OVERRIDES = {
    # no telemetry, no hub look-ups, no colour codes in parsed output
    "PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
    "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200", "PYTHONWARNINGS": "ignore",
}


TIME_BIN = shutil.which("time", path="/usr/bin:/bin")  # GNU time, for per-tool peak RSS


@dataclass
class Run:
    tool: str
    path: str
    rc: int
    wall_s: float
    maxrss_mib: float
    outcome: str
    level: str
    detail: str


def _spawn(argv: list[str], work: Path, env: dict[str, str], timeout: float,
           ) -> tuple[int, float, float, bool, str, str]:
    """Run ``argv`` in its own session; returns rc, wall s, wait4 maxrss KiB, timed out,
    stdout, stderr. The whole process group is killed at the timeout."""
    timed_out = threading.Event()
    with open(work / "stdout", "w+b") as out_f, open(work / "stderr", "w+b") as err_f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=out_f, stderr=err_f, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        timer.cancel()
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode(errors="replace")
        err = err_f.read().decode(errors="replace")
    return rc, wall, float(usage.ru_maxrss), timed_out.is_set(), out, err


def run_tool(tool: str, path: Path, timeout: float, home: Path) -> Run:
    """One whole-process invocation: wall time, exit code, peak RSS, parsed verdict."""
    spec = TOOLS[tool]
    path = path.resolve()
    work = Path(tempfile.mkdtemp(prefix=f"bench-{tool}-"))
    env = {**os.environ, **ENV_OVERRIDES, "HOME": str(home)}
    argv = spec.argv(path, work)
    if TIME_BIN:  # the tool's own peak RSS: wait4 on our child would also count the
        # harness' pages from before exec. %M is in KiB.
        argv = [TIME_BIN, "-f", "%M", "-o", str(work / "time.txt"), *argv]
    rc, wall, rss_kib, timed_out, out, err = _spawn(argv, work, env, timeout)
    if timed_out:
        res = Outcome("timeout", detail=f">{timeout:.0f}s")
    else:
        try:
            res = spec.parse(rc, out, err, work)
        except Exception as exc:  # a parser bug must not lose the whole run
            res = Outcome("crash", detail=f"parse: {exc!r}"[:200])
    timing = work / "time.txt"
    if TIME_BIN and timing.exists():
        last = (timing.read_text().strip().splitlines() or [""])[-1]
        rss_kib = float(last) if last.isdigit() else rss_kib
    if timed_out:
        rss_kib = -1024.0  # unknown: GNU time was killed with the tool
    shutil.rmtree(work, ignore_errors=True)
    return Run(tool, str(path), rc, round(wall, 3), round(rss_kib / 1024, 1),
               res.outcome, res.level, " ".join(res.detail.split()))


FileList = list[dict[str, Any]]


# -- tables ------------------------------------------------------------------------------

def _cell(runs: list[Run]) -> str:
    """'detected/total', with the non-verdicts (errors, unsupported, ...) noted."""
    hit = sum(r.outcome == "flagged" for r in runs)
    other: dict[str, int] = defaultdict(int)
    for r in runs:
        if r.outcome not in ("flagged", "clean"):
            other[r.outcome] += 1
    note = ", ".join(f"{n} {k}" for k, n in sorted(other.items()))
    mark = " ✅" if hit == len(runs) else (" ❌" if hit == 0 else "")
    return f"{hit}/{len(runs)}{mark}" + (f" ({note})" if note else "")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def detection_table(runs: list[Run], files: list[dict[str, Any]], tools: list[str]) -> str:
    fam_of = {f["path"]: f["family"] for f in files}
    by: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        by[(fam_of[r.path], r.tool)].append(r)
    families = list(dict.fromkeys(f["family"] for f in files))
    rows = [[fam, str(sum(f["family"] == fam for f in files))]
            + [_cell(by[(fam, t)]) for t in tools] for fam in families]
    rows.append(["**all malicious files**", str(len(files)),
                 *[f"**{_cell([r for r in runs if r.tool == t])}**" for t in tools]])
    fams_full = ["**families fully detected**", str(len(families))] + [
        f"**{sum(all(r.outcome == 'flagged' for r in by[(fam, t)]) for fam in families)}"
        f"/{len(families)}**" for t in tools]
    rows.append(fams_full)
    return _md_table(["technique family", "files", *tools], rows)


def strict_table(runs: list[Run], tools: list[str], n: int, label: str) -> str:
    """Counts at the tool's own verdict, at 'high' only, and by exit code != 0."""
    rows = []
    for name, pred in (
            ("own verdict (flagged)", lambda r: r.outcome == "flagged"),
            ("high/critical only", lambda r: r.outcome == "flagged" and r.level == "high"),
            ("medium or above", lambda r: r.level in ("medium", "high")),
            ("exit code ≠ 0 (fail-closed gate)", lambda r: r.rc != 0 or r.outcome == "timeout"),
            ("error / crash / timeout", lambda r: r.outcome in ("error", "crash", "timeout")),
            ("unsupported (nothing scanned)", lambda r: r.outcome == "unsupported")):
        rows.append([name] + [f"{sum(pred(r) for r in runs if r.tool == t)}/{n}"
                              for t in tools])
    return _md_table([label, *tools], rows)


def _details(summary: str, lines: list[str]) -> list[str]:
    """A collapsed Markdown block (the lists are long)."""
    return ["<details><summary>" + summary + "</summary>", "", *lines, "", "</details>"]


def fp_details(runs: list[Run], tools: list[str]) -> str:
    out: list[str] = []
    for t in tools:
        mine = [r for r in runs if r.tool == t]
        groups = (
            ("flagged", [r for r in mine if r.outcome == "flagged"]),
            ("medium-level finding, not flagged", [r for r in mine if r.outcome == "clean"
                                                  and r.level == "medium"]),
            ("error / crash / timeout", [r for r in mine
                                         if r.outcome in ("error", "crash", "timeout")]),
            ("unsupported", [r for r in mine if r.outcome == "unsupported"]))
        lines = []
        for label, items in groups:
            for r in items:
                rel = r.path.split("benign/", 1)[-1]
                lines.append(f"- {label}: `{rel}` — {r.detail[:150]}")
        if lines:
            counts = ", ".join(f"{len(items)} {label}" for label, items in groups if items)
            out += _details(f"<b>{t}</b>: {counts}", lines)
    return "\n".join(out) or "(none)"


def miss_details(runs: list[Run], tools: list[str]) -> str:
    out: list[str] = []
    for t in tools:
        miss = [r for r in runs if r.tool == t and r.outcome != "flagged"]
        if miss:
            lines = [f"- `{r.path.split('malicious/', 1)[-1]}` — {r.outcome}"
                     + (f" ({r.level})" if r.level != "none" else "")
                     + (f": {r.detail[:120]}" if r.detail else "") for r in miss]
            out += _details(f"<b>{t}</b> missed {len(miss)}", lines)
    return "\n".join(out) or "(none)"


def timing_table(results: dict[str, list[Run]], tools: list[str], what: str) -> str:
    base = results.get("bastion")
    base_s = statistics.median(r.wall_s for r in base) if base else None
    rows = []
    for t in tools:
        runs = results.get(t)
        if not runs:
            rows.append([t, "n/a (single-file CLI)", "", "", "", ""])
            continue
        wall = statistics.median(r.wall_s for r in runs)
        ok = runs[0].outcome
        ratio = f"{wall / base_s:.1f}×" if base_s and t != "bastion" else ("1.0×" if base_s
                                                                          else "")
        rss = max(r.maxrss_mib for r in runs)
        verdict = f"{ok}: {runs[0].detail[:70]}" if runs[0].detail else ok
        rows.append([t, f"{wall:.2f}", ", ".join(f"{r.wall_s:.2f}" for r in runs), ratio,
                     f"{rss:.0f}" if rss >= 0 else "n/a", verdict])
    return _md_table(["tool", f"{what} wall s (median)", "runs", "vs Bastion",
                      "peak RSS MiB", "verdict"], rows)


# -- main --------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    code = ("import importlib.metadata as m\nfor p in ('modelscan','picklescan','fickling',"
            "'modelaudit','modelaudit-picklescan','torch','numpy'):\n"
            "    print(p, m.version(p))")
    out = subprocess.run([str(ANCHORS / "python"), "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    vers = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    head = subprocess.run(["git", "-C", str(MAIN), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(MAIN), "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    vers["bastion"] = f"{head}{' + uncommitted src changes' if dirty else ''}"
    return vers


def timed(tools: list[str], path: Path, repeat: int, timeout: float, home: Path,
          slow_s: float = 60.0) -> dict[str, list[Run]]:
    """Serial runs (no other benchmark process competing); a slow tool is not repeated."""
    res: dict[str, list[Run]] = {}
    for t in tools:
        if path.is_dir() and not TOOLS[t].folders:
            continue
        runs = []
        for _ in range(repeat):
            r = run_tool(t, path, timeout, home)
            runs.append(r)
            print(f"  {t}: {r.wall_s:.2f}s {r.outcome} rss={r.maxrss_mib:.0f}MiB", flush=True)
            if r.wall_s > slow_s or r.outcome == "timeout":
                break
        res[t] = runs
    return res


def warm_cache(path: Path) -> None:
    """Read the files once so every tool sees the same (warm) page cache."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def detection_runs(tools: list[str], files: FileList, args: argparse.Namespace, home: Path,
                   t_start: float) -> list[Run]:
    """Every tool on every malicious and benign file, ``--jobs`` processes at a time."""
    jobs = [(t, f) for f in files for t in tools]
    print(f"detection/FP: {len(jobs)} runs, {args.jobs} at a time", flush=True)
    runs: list[Run] = []

    def one(job: tuple[str, dict[str, Any]]) -> Run:
        return run_tool(job[0], args.corpus / job[1]["path"], args.timeout, home)

    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(one, jobs):
            r.path = str(Path(r.path).relative_to(args.corpus.resolve()))
            runs.append(r)
            if len(runs) % 50 == 0:
                print(f"  {len(runs)}/{len(jobs)} ({time.monotonic() - t_start:.0f}s)",
                      flush=True)
    return runs


def reused(path: Path | None, tools: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Runs of the tools *not* being run now, from an earlier raw results file."""
    if path is None:
        return {"detection": [], "big": {}, "folder": {}, "versions": {}}, []
    old = json.loads(path.read_text())
    keep = [t for t in old["tools"] if t not in tools]
    return {"detection": [r for r in old["detection"] if r["tool"] in keep],
            "big": {t: v for t, v in old["big"].items() if t in keep},
            "folder": {t: v for t, v in old["folder"].items() if t in keep},
            "versions": old["versions"],
            "generated": old.get("generated", "?")}, keep


def main() -> int:
    ap = argparse.ArgumentParser(description="Scanner benchmark")
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel runs for tables (a)/(b)")
    ap.add_argument("--repeat", type=int, default=3, help="timing repetitions for (c)/(d)")
    ap.add_argument("--skip", default="", help="comma list of: detection,big,folder")
    ap.add_argument("--out", type=Path, default=HERE / "results.md",
                    help="Markdown report; raw runs go to out/<same stem>.json")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="raw results JSON of an earlier run: its runs of the tools not "
                         "in --tools are reused (e.g. rerun only bastion)")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    skip = set(args.skip.split(","))
    old, kept = reused(args.reuse, tools)
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    files = manifest["files"]
    marker_glob = manifest["marker_prefix"] + "*"
    before = set(glob.glob(marker_glob))
    home = Path(tempfile.mkdtemp(prefix="bench-home-"))
    t_start = time.monotonic()
    # a reused tool keeps the version it ran at (Bastion's commit may have moved since)
    vers = {**versions(), **{k: v for k, v in old["versions"].items() if k in kept}}
    print("versions:", vers, flush=True)

    mal = [f for f in files if f["group"] == "malicious"]
    ben = [f for f in files if f["group"] == "benign"]
    det_runs = [Run(**r) for r in old["detection"]]
    if "detection" not in skip:
        det_runs += detection_runs(tools, mal + ben, args, home, t_start)
    mal_paths = {f["path"] for f in mal}
    mal_runs = [r for r in det_runs if r.path in mal_paths]
    ben_runs = [r for r in det_runs if r.path not in mal_paths]

    big_res = {t: [Run(**r) for r in rs] for t, rs in old["big"].items()}
    big = [f for f in files if f["group"] == "big"]
    if "big" not in skip and big:
        path = args.corpus / big[0]["path"]
        print(f"big checkpoint: {path} ({path.stat().st_size / 2**30:.2f} GiB)", flush=True)
        warm_cache(path)
        big_res.update(timed(tools, path, args.repeat, args.timeout, home))
    folder_res = {t: [Run(**r) for r in rs] for t, rs in old["folder"].items()}
    folder_files = [f for f in files if f["group"] == "folder"]
    if "folder" not in skip and folder_files:
        path = args.corpus / "folder"
        print(f"folder: {len(folder_files)} files", flush=True)
        warm_cache(path)
        folder_res.update(timed(tools, path, args.repeat, args.timeout, home))

    created = sorted(set(glob.glob(marker_glob)) - before)
    shown = [t for t in TOOLS if t in tools or t in kept]
    note = (f"Runs of {', '.join(kept)} reused from `{args.reuse.name}` "
            f"(generated {old['generated']})." if kept and args.reuse else "")
    md = render(args, shown, mal, ben, mal_runs, ben_runs, big, big_res, folder_files,
                folder_res, vers, created, time.monotonic() - t_start, note)
    print(md)
    args.out.write_text(md)
    raw = {"generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": vers,
           "tools": shown, "detection": [asdict(r) for r in det_runs],
           "big": {t: [asdict(r) for r in rs] for t, rs in big_res.items()},
           "folder": {t: [asdict(r) for r in rs] for t, rs in folder_res.items()},
           "markers_created": created}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / f"{args.out.stem}.json").write_text(json.dumps(raw, indent=1))
    shutil.rmtree(home, ignore_errors=True)
    return 1 if created else 0


def render(args: argparse.Namespace, tools: list[str], mal: FileList, ben: FileList,
           mal_runs: list[Run], ben_runs: list[Run], big: FileList,
           big_res: dict[str, list[Run]], folder_files: FileList,
           folder_res: dict[str, list[Run]], vers: dict[str, str], created: list[str],
           elapsed: float, note: str) -> str:
    parts = [
        "# Scanner benchmark results",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        "`benchmarks/scanner/run.py` on "
        f"{platform.machine()} Linux, {os.cpu_count()} CPUs (shared), Python "
        f"{platform.python_version()}; timeout {args.timeout:.0f} s per invocation; "
        f"total {elapsed / 60:.1f} min.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        *(["", note] if note else []),
        "",
        "How each tool's verdict is read:",
        "",
        *[f"- **{t}**: {VERDICTS[t]}" for t in tools],
        "",
        f"Payload markers created during the run: {len(created)}"
        + (f" — {created}" if created else " (no tool executed a payload)."),
    ]
    if mal_runs:
        parts += ["", f"## (a) Detection per technique family ({len(mal)} malicious files)", "",
                  "Cell: files flagged / files in the family, at the tool's own verdict; "
                  "non-verdicts noted in parentheses.", "",
                  detection_table(mal_runs, mal, tools), "",
                  strict_table(mal_runs, tools, len(mal), "malicious files"), "",
                  "Missed files per tool:", "", miss_details(mal_runs, tools)]
    if ben_runs:
        parts += ["", f"## (b) False positives on {len(ben)} benign files", "",
                  strict_table(ben_runs, tools, len(ben), "benign files"), "",
                  "Benign files flagged, with medium-only findings and errors:", "",
                  fp_details(ben_runs, tools)]
    if big_res:
        size = big[0]["bytes"] / 2**30
        parts += ["", f"## (c) Whole-process time on the {size:.2f} GiB PyTorch checkpoint", "",
                  "Page cache warmed first; one process per run, median of up to "
                  f"{args.repeat} runs (a tool slower than 60 s runs once).", "",
                  timing_table(big_res, tools, "2 GB")]
    if folder_res:
        parts += ["", f"## (d) Folder of {len(folder_files)} small model files "
                  "(one process over the folder)", "",
                  timing_table(folder_res, tools, "folder")]
    if mal_runs or ben_runs:
        med = {t: statistics.median(r.wall_s for r in mal_runs + ben_runs if r.tool == t)
               for t in tools}
        parts += ["", "Median whole-process time per single file in (a)/(b) "
                  f"(with {args.jobs} runs in parallel, so indicative only): "
                  + ", ".join(f"{t} {s:.2f} s" for t, s in med.items()) + "."]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
