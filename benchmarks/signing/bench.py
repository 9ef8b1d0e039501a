"""Benchmark model signing: Bastion against the machine's SHA-256 limit and model-signing.

    .venv/bin/python benchmarks/signing/bench.py                  # 4 GB, warm and cold
    .venv/bin/python benchmarks/signing/bench.py --size 512MB     # a quick run

Builds a folder of mixed files (two large weight shards, mid-size shards, many small
tokenizer/config files, a few empty ones), then measures, with the page cache warm and cold
(cold: ``sync; echo 3 > /proc/sys/vm/drop_caches`` before each run, which needs root):

* the SHA-256 limit: ``hashlib`` over the same bytes, cut in 64 MB pieces, with 1, 2, 4 ...
  threads, several read sizes, reading into a ``bytearray`` or a page-aligned buffer; the
  best is "the limit";
* the same hashing as a minimal Python process (interpreter start, walk, threads, exit): what
  any Python command pays besides hashing, shown beside the limit, not part of it;
* ``bastion sign`` and ``bastion verify`` as whole processes (interpreter start, imports,
  walk, hashing, signing, writing), SHA-256 shards (the default), with one worker per CPU
  and with one (``--workers 1``); and the BLAKE3 mode;
* model-signing (1.1) on the same folder, as whole processes: its default (files, SHA-256),
  its sharded SHA-256 mode and BLAKE3, sign and verify (its verifier is given the hashing
  configuration: auto-detected, its sharded signatures fail, see tests/sign/test_interop.py).

Every case runs once per round, rounds interleaved, and the median is reported, so a load
that drifts (the machine is shared) hits every case alike. Throughput is folder bytes / wall
seconds; CPU seconds (user + system, all threads, from wait4) are reported too, as bytes per
CPU-second is steadier than wall time on a loaded machine. The Markdown table goes to stdout and to
``benchmarks/signing/results.md`` (with the size, CPU count and load average).
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
#: Where the whole processes run: the scratch folder, not the directory the benchmark was
#: started from (in a checkout of Bastion, its own pyproject.toml would be read as a policy
#: candidate: a cost of the developer's checkout, not of the tool). Set by main().
RUN_IN: Path | None = None
_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    lower = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if lower.endswith(unit):
            return int(float(lower[: -len(unit)]) * _UNITS[unit])
    return int(lower)


# -- the folder ----------------------------------------------------------------------------------


def layout(total: int) -> list[tuple[str, int]]:
    """File names and sizes: what a sharded checkpoint with its tokenizer looks like."""
    files = [("model-00001-of-00002.safetensors", int(total * 0.375)),
             ("model-00002-of-00002.safetensors", int(total * 0.25))]
    files += [(f"adapters/adapter-{i}.bin", int(total * 0.05)) for i in range(4)]
    files += [(f"shards/part-{i:03d}.bin", int(total * 0.005)) for i in range(32)]
    small = total - sum(size for _, size in files)
    count = 200
    files += [(f"tokenizer/vocab-{i:03d}.txt", small // count) for i in range(count)]
    files += [(f"empty-{i}.txt", 0) for i in range(5)]
    files.append(("config.json", 512))
    return files


def build(folder: Path, total: int) -> int:
    """Write the folder (once; reused when the layout matches). Returns its byte count."""
    marker = folder / ".bench-size"
    if marker.is_file() and marker.read_text() == str(total):
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()
                   and f.name != ".bench-size")
    shutil.rmtree(folder, ignore_errors=True)
    block = bytearray(os.urandom(1 << 20))
    written = 0
    for i, (name, size) in enumerate(layout(total)):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            left, n = size, 0
            while left > 0:
                block[:16] = i.to_bytes(8, "little") + n.to_bytes(8, "little")
                chunk = memoryview(block)[: min(left, len(block))]
                handle.write(chunk)
                left -= len(chunk)
                n += 1
        written += size
    marker.write_text(str(total))
    return written


def files_of(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.name != ".bench-size")


# -- the limit -----------------------------------------------------------------------------------


def hashlib_limit(paths: Sequence[Path], workers: int, chunk: int,
                  piece: int = 64 << 20, aligned: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds for SHA-256 over every byte, ``piece``-sized units, N threads;
    ``aligned``: each thread reads into a page-aligned buffer (an anonymous ``mmap``)
    instead of a ``bytearray``, which in a fresh process starts 16 bytes past a page."""
    units = [(p, start, min(start + piece, p.stat().st_size))
             for p in paths for start in range(0, p.stat().st_size, piece)]
    local = threading.local()

    def run(unit: tuple[Path, int, int]) -> bytes:
        buffer = getattr(local, "buffer", None)
        if buffer is None or len(buffer) != chunk:
            buffer = local.buffer = mmap.mmap(-1, chunk) if aligned else bytearray(chunk)
        view = memoryview(buffer)
        path, offset, end = unit
        hasher = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY)
        try:
            while offset < end:
                got = os.preadv(fd, [view[: min(chunk, end - offset)]], offset)
                hasher.update(view[:got])
                offset += got
        finally:
            os.close(fd)
        return hasher.digest()

    clock, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, units))
    return time.perf_counter() - clock, time.process_time() - cpu


# -- whole processes -----------------------------------------------------------------------------


#: The in-process limit's work as a whole Python process: start the interpreter, list the
#: folder, hash it in 64 MB pieces with N threads and 2 MiB page-aligned reads, exit. What
#: any Python command pays besides hashing; its row is shown, not part of the limit.
MINIMAL_PROCESS = """\
import hashlib, mmap, os, sys, threading
root, workers, piece = sys.argv[1], int(sys.argv[2]), 64 << 20
paths = sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names
               if n != ".bench-size")
units = [(p, s, min(s + piece, z)) for p in paths for z in [os.path.getsize(p)]
         for s in range(0, z, piece)]
lock, todo = threading.Lock(), iter(units)
def work():
    view = memoryview(mmap.mmap(-1, 2 << 20))
    while True:
        with lock:
            unit = next(todo, None)
        if unit is None:
            return
        path, offset, end = unit
        hasher, fd = hashlib.sha256(), os.open(path, os.O_RDONLY)
        while offset < end:
            got = os.preadv(fd, [view[:min(len(view), end - offset)]], offset)
            hasher.update(view[:got])
            offset += got
        os.close(fd)
threads = [threading.Thread(target=work) for _ in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def warm(paths: Sequence[Path]) -> None:
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(8 << 20):
                pass


def timed(argv: Sequence[str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, all threads) and status of one process."""
    clock = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=RUN_IN)
        _, code, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(code)
        seconds = time.perf_counter() - clock
        err.seek(0)
        last = (err.read().decode(errors="replace").strip().splitlines() or ["?"])[-1]
    status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {last[:120]}"
    return seconds, usage.ru_utime + usage.ru_stime, status


def bastion(*args: str | Path) -> list[str]:
    return [PYTHON, "-m", "bastion", *map(str, args)]


def model_signing(action: str, folder: Path, sig: Path, key: Path, hashing: str) -> list[str]:
    config = {"files": "use_file_serialization()",
              "shards": "use_shard_serialization()",
              "blake3": "use_file_serialization(hashing_algorithm='blake3')"}[hashing]
    if action == "sign":
        code = (f"from model_signing import signing, hashing as h; signing.Config()"
                f".use_elliptic_key_signer(private_key={str(key)!r}).set_hashing_config("
                f"h.Config().{config}).sign({str(folder)!r}, {str(sig)!r})")
    else:
        code = (f"from model_signing import verifying, hashing as h; verifying.Config()"
                f".use_elliptic_key_verifier(public_key={str(key)!r}).set_hashing_config("
                f"h.Config().{config}).verify({str(folder)!r}, {str(sig)!r})")
    return [PYTHON, "-c", code]


@dataclass
class Case:
    label: str
    run: Callable[[], tuple[float, float, str]]
    limit: bool = False  # a hashlib row: part of "the limit"
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    status: str = "ok"

    def wall(self) -> float:
        return statistics.median(self.walls)

    def cpu(self) -> float:
        return statistics.median(self.cpus)


def cases(folder: Path, work: Path, paths: Sequence[Path],
          with_model_signing: bool) -> list[Case]:
    cpus = len(os.sched_getaffinity(0))
    out: list[Case] = []
    for workers, chunk in sorted({(1, 1 << 20), (cpus, 1 << 20), (2 * cpus, 1 << 20),
                                  (cpus, 256 << 10), (cpus, 2 << 20), (cpus, 4 << 20)}):
        for aligned in (False, True):
            buffer = ", page-aligned" if aligned else ""
            out.append(Case(f"hashlib SHA-256, {workers} threads, {chunk >> 10} KiB reads"
                            f"{buffer}", lambda w=workers, c=chunk, a=aligned:
                            (*hashlib_limit(paths, w, c, aligned=a), "ok"), limit=True))
    key, pub = work / "bench.key", work / "bench.pub"
    if not key.exists():
        subprocess.run(bastion("keygen", key), check=True, capture_output=True)
    out.append(Case("python -m bastion --version (start-up)",
                    lambda: timed(bastion("--version"))))
    out.append(Case(f"hashlib SHA-256 as a whole process ({cpus} threads, 2048 KiB reads)",
                    lambda: timed([PYTHON, "-c", MINIMAL_PROCESS, str(folder), str(cpus)])))
    for name, extra in [("bastion SHA-256 shards", ()),
                        ("bastion SHA-256 shards, 1 thread", ("--workers", "1")),
                        ("bastion SHA-256 files", ("--method", "files")),
                        ("bastion BLAKE3", ("--method", "files", "--hash", "blake3"))]:
        sig = work / f"{name.replace(' ', '_').replace(',', '')}.sig"
        workers = ("--workers", "1") if "1 thread" in name else ()
        out.append(Case(f"{name}: sign", lambda e=extra, s=sig, w=workers: timed(bastion(
            "sign", folder, "--key", key, "-o", s, "-q", *e, *w))))
        out.append(Case(f"{name}: verify", lambda s=sig, w=workers: timed(bastion(
            "verify", folder, "--key", pub, "-s", s, "-q", "-f", "json", "-o",
            work / "report.json", *w))))
    if with_model_signing:
        for hashing in ("files", "shards", "blake3"):
            sig = work / f"ms-{hashing}.sig"
            out.append(Case(f"model-signing {hashing}: sign", lambda h=hashing, s=sig: timed(
                model_signing("sign", folder, s, key, h))))
            out.append(Case(f"model-signing {hashing}: verify", lambda h=hashing, s=sig:
                            timed(model_signing("verify", folder, s, pub, h))))
    return out


def run_rounds(all_cases: Sequence[Case], paths: Sequence[Path], cold: bool,
               rounds: int) -> None:
    """Every case once per round, interleaved, so drifting load hits all of them alike."""
    for _ in range(rounds):
        for case in all_cases:
            if cold:
                drop_caches()
            else:
                warm(paths)
            wall, cpu, status = case.run()
            if status != "ok":
                case.status = status
            case.walls.append(wall)
            case.cpus.append(cpu)


# -- the report ----------------------------------------------------------------------------------


def table(title: str, rows: Sequence[Case], size: int) -> tuple[list[str], dict[str, float]]:
    limits = [r for r in rows if r.limit]
    limit = max(size / r.wall() for r in limits)
    limit_cpu = max(size / r.cpu() for r in limits)
    out = [f"### {title}", "",
           f"Limit: {limit / 1e9:.3f} GB/s wall, {limit_cpu / 1e9:.3f} GB per CPU-second "
           "(the best hashlib row). Medians of the rounds.", "",
           "| run | wall s | GB/s | vs limit | CPU s | GB/CPU-s | vs limit (CPU) | status |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    rates: dict[str, float] = {}
    for row in rows:
        rate, per_cpu = size / row.wall(), size / max(row.cpu(), 1e-9)
        rates[row.label] = rate
        out.append(f"| {row.label} | {row.wall():.2f} | {rate / 1e9:.3f} | {rate / limit:.3f} "
                   f"| {row.cpu():.2f} | {per_cpu / 1e9:.3f} | {per_cpu / limit_cpu:.3f} "
                   f"| {row.status} |")
    rates["limit"] = limit
    return [*out, ""], rates


def summary(rates: dict[str, float]) -> list[str]:
    limit = rates["limit"]
    lines = []
    ours = rates.get("bastion SHA-256 shards: sign")
    theirs = max((v for k, v in rates.items() if k.startswith(("model-signing files: sign",
                                                                "model-signing shards: sign"))),
                 default=None)
    for action in ("sign", "verify"):  # three decimals: 0.947 is not "0.95"
        rate = rates.get(f"bastion SHA-256 shards: {action}")
        if rate:
            lines.append(f"- SHA-256 {action}: {rate / 1e9:.3f} GB/s = {rate / limit:.3f} of "
                         "the limit; goal ≥ 0.95.")
    floor = next((v for k, v in rates.items() if "as a whole process" in k), None)
    if floor:
        lines.append(f"- A Python process that only hashes (start-up, walk, threads): "
                     f"{floor / 1e9:.3f} GB/s = {floor / limit:.3f} of the limit, the floor "
                     "for any Python command.")
    if ours and theirs:
        lines.append(f"- SHA-256 sign vs model-signing's faster SHA-256 mode: "
                     f"{ours / theirs:.2f}× (goal > 1).")
    b3, ms_b3 = rates.get("bastion BLAKE3: sign"), rates.get("model-signing blake3: sign")
    if b3 and ms_b3:
        lines.append(f"- BLAKE3 sign: {b3 / 1e9:.3f} GB/s vs model-signing {ms_b3 / 1e9:.3f} "
                     f"GB/s ({b3 / ms_b3:.2f}×, goal ≥ 1).")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4GB", help="folder size (default 4GB)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) /
                        "bastion-sign-bench", help="where the folder is built (kept)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    parser.add_argument("--no-model-signing", action="store_true")
    parser.add_argument("--results", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    folder = args.dir.resolve() / "model"
    work = args.dir.resolve() / "work"
    work.mkdir(parents=True, exist_ok=True)
    global RUN_IN
    RUN_IN = work
    size = build(folder, parse_size(args.size))
    paths = files_of(folder)
    sections: list[str] = []
    cold_ok = not args.no_cold and drop_caches()
    for cold in ([False, True] if cold_ok else [False]):
        rows = cases(folder, work, paths, not args.no_model_signing)
        run_rounds(rows, paths, cold, args.rounds)
        name = "cold page cache" if cold else "warm page cache"
        text, rates = table(name.capitalize(), rows, size)
        sections += [*text, f"Summary ({name}):", "", *summary(rates), ""]
    load_after = os.getloadavg()
    header = [
        "# Model signing benchmark", "",
        f"- folder: {size / 1e9:.2f} GB in {len(paths)} files (`--size {args.size}`)",
        f"- machine: {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, Python {platform.python_version()}",
        f"- load average before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}",
        f"- cold cache: {'measured (drop_caches before each run)' if cold_ok else 'not measured'}"
        + ("" if cold_ok or args.no_cold else " (writing /proc/sys/vm/drop_caches was refused)"),
        f"- {args.rounds} interleaved rounds; {time.strftime('%Y-%m-%d %H:%M')}, "
        f"`{' '.join(sys.argv)}`", "",
    ]
    text = "\n".join(header + sections)
    print(text)
    args.results.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
