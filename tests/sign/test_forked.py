"""Hashing in forked worker processes (the command line's choice): the same digests and errors
as threads, workers that stop when told, when killed and when their parent is gone.

A fork is used only by a process with no other thread, and the test process may have some
(servers other tests started), so each case runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import KeyPair

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="forked hashing workers are used on Linux only")

_PRELUDE = """\
import json, os, sys, time
from bastion.sign.hashing import ForkedPending, Pending, start_hashing
from bastion.sign.manifest import FILES, SHARDS, Serialization, walk_model
def summary(hashed):
    return {"resources": [[r.name, r.digest.hex()] for r in hashed.resources],
            "errors": [[e.rel, e.reason] for e in hashed.errors]}
"""


def _run(code: str, timeout: float = 60) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PRELUDE + code], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _model(root: Path) -> Path:
    root.mkdir()
    (root / "weights.bin").write_bytes(os.urandom(3_000_000))
    (root / "sub").mkdir()
    (root / "sub" / "vocab.txt").write_bytes(os.urandom(12_345))
    (root / "empty.txt").write_bytes(b"")
    for i in range(40):
        (root / "sub" / f"part-{i:02d}.bin").write_bytes(os.urandom(1000 + 37 * i))
    return root


@pytest.mark.parametrize("method", ["shards", "files"])
def test_forked_workers_hash_exactly_what_threads_hash(tmp_path: Path, method: str) -> None:
    model = _model(tmp_path / "model")
    got = _run(f"""
files = walk_model({str(model)!r}).files
s = Serialization({method!r}, "sha256", 65536 if {method!r} == "shards" else None)
forked = start_hashing(files, s, 2, processes=True)
workers = len(forked._workers)
print(json.dumps({{"kind": type(forked).__name__, "workers": workers,
                   "forked": summary(forked.result()),
                   "threads": summary(Pending(files, s, 2).result())}}))
""")
    assert (got["kind"], got["workers"]) == ("ForkedPending", 2)
    assert got["forked"] == got["threads"]
    assert not got["forked"]["errors"]  # type: ignore[index]
    units = len(got["forked"]["resources"])  # type: ignore[arg-type]
    assert units == (46 + 1 + 40 if method == "shards" else 43)  # 3 MB in 64 KiB shards


def test_a_file_that_changed_after_the_walk_is_an_error_in_a_worker(tmp_path: Path) -> None:
    model = _model(tmp_path / "model")
    got = _run(f"""
files = walk_model({str(model)!r}).files
os.truncate({str(model / "weights.bin")!r}, 1000)
with open({str(model / "sub" / "vocab.txt")!r}, "ab") as handle:
    handle.write(b"grown")
hashed = start_hashing(files, Serialization(FILES, "sha256", None), 2, processes=True).result()
print(json.dumps(summary(hashed)))
""")
    assert got["errors"] == [["sub/vocab.txt", "file grew while it was hashed"],
                             ["weights.bin", "file shrank while it was hashed"]]


def _sparse(root: Path, size: int = 1 << 40) -> Path:
    """A file of ``size`` bytes that takes no disk: hashing it takes minutes."""
    root.mkdir()
    with (root / "huge.bin").open("wb") as handle:
        handle.truncate(size)
    return root


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie left to init
    except FileNotFoundError:
        return True


def test_cancel_kills_the_workers_at_once(tmp_path: Path) -> None:
    model = _sparse(tmp_path / "model")
    got = _run(f"""
files = walk_model({str(model)!r}).files
pending = start_hashing(files, Serialization(SHARDS, "sha256", 1 << 30), 2, processes=True)
pids = [pid for pid, _ in pending._workers]
time.sleep(0.2)
clock = time.monotonic()
pending.cancel()
seconds = time.monotonic() - clock
alive = []
for pid in pids:
    try:
        os.kill(pid, 0)
        alive.append(pid)
    except ProcessLookupError:
        pass
print(json.dumps({{"workers": len(pids), "seconds": seconds, "alive": alive}}))
""")
    assert got["workers"] == 2
    assert got["alive"] == []  # killed and reaped
    assert got["seconds"] < 5  # type: ignore[operator]


def test_a_worker_that_dies_leaves_its_units_reported_not_a_hang(tmp_path: Path) -> None:
    model = _sparse(tmp_path / "model", 4 << 30)
    (model / "small.txt").write_bytes(b"tokenizer")
    got = _run(f"""
import signal
files = walk_model({str(model)!r}).files
pending = start_hashing(files, Serialization(SHARDS, "sha256", 1 << 30), 1, processes=True)
time.sleep(0.2)
os.kill(pending._workers[0][0], signal.SIGKILL)
print(json.dumps(summary(pending.result())))
""")
    assert got["resources"] == []
    assert got["errors"] == [["huge.bin", "hashing worker stopped (exit status -9)"],
                             ["small.txt", "hashing worker stopped (exit status -9)"]]


def test_workers_stop_when_their_parent_is_gone(tmp_path: Path) -> None:
    model = _sparse(tmp_path / "model")
    got = _run(f"""
files = walk_model({str(model)!r}).files
pending = start_hashing(files, Serialization(SHARDS, "sha256", 1 << 30), 2, processes=True)
print(json.dumps({{"pids": [pid for pid, _ in pending._workers]}}), flush=True)
os._exit(0)  # no cancel, no wait: as a process killed outright
""")
    pids = got["pids"]
    assert len(pids) == 2  # type: ignore[arg-type]
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids)  # type: ignore[union-attr]


def test_threads_are_used_where_a_fork_is_not_safe(tmp_path: Path) -> None:
    model = _model(tmp_path / "model")
    got = _run(f"""
import threading
files = walk_model({str(model)!r}).files
sha, blake3 = Serialization(FILES, "sha256", None), Serialization(FILES, "blake3", None)
kinds = [type(start_hashing(files, sha, 2, processes=False)).__name__]
try:
    import blake3 as _
    kinds.append(type(start_hashing(files, blake3, 2, processes=True)).__name__)
except ImportError:
    kinds.append("Pending")
other = threading.Event()
thread = threading.Thread(target=other.wait)
thread.start()
kinds.append(type(start_hashing(files, sha, 2, processes=True)).__name__)
other.set()
thread.join()
print(json.dumps({{"kinds": kinds}}))
""")
    # Not asked; BLAKE3 (its own thread pool); another thread running: threads every time.
    assert got["kinds"] == ["Pending", "Pending", "Pending"]


def test_the_command_line_hashes_in_forked_workers(model: Path, keypair: Callable[..., KeyPair],
                                                    tmp_path: Path) -> None:
    pair = keypair()
    key, sig = pair.private, tmp_path / "model.sig"
    got = _run(f"""
from bastion.sign import hashing
seen = []
original = hashing.ForkedPending._start
def spy(self, workers):
    original(self, workers)
    seen.append(len(self._workers))
hashing.ForkedPending._start = spy
from bastion.cli.fast import run_fast
signed = run_fast(["sign", {str(model)!r}, "--key", {str(key)!r}, "-o", {str(sig)!r}, "-q"])
verified = run_fast(["verify", {str(model)!r}, "-s", {str(sig)!r}, "--key",
                     {str(key.with_suffix(".pub"))!r}, "-q", "-f", "json", "-o",
                     {str(tmp_path / "out.json")!r}, "--workers", "2"])
print(json.dumps({{"codes": [signed, verified], "forks": seen}}))
""")
    assert got["codes"] == [0, 0]
    assert len(got["forks"]) == 2  # type: ignore[arg-type]
    assert got["forks"][1] == 2  # type: ignore[index]
    assert '"SIGN-VERIFIED"' in (tmp_path / "out.json").read_text()
