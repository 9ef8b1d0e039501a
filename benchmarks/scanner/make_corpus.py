"""Generate the scanner benchmark corpus under benchmarks/scanner/corpus/ (gitignored).

Run with Bastion's venv (it has torch CPU, numpy, joblib, scikit-learn, safetensors, onnx,
h5py):

    .venv/bin/python benchmarks/scanner/make_corpus.py [--no-big] [--force]

Layout:
    corpus/malicious/<family>/...   hostile files, grouped by technique family
    corpus/benign/<kind>/...        real models written by the real libraries
    corpus/big/checkpoint-2gb.pt    ~2 GB PyTorch zip state dict (timing)
    corpus/folder/                  ~300 small benign model files (folder timing)
    corpus/manifest.json            every file: group, family, expected verdict, format

The payloads are harmless: each would only ``touch /tmp/bench-marker-...`` if loaded.
Generation is deterministic (fixed seeds) apart from library metadata such as timestamps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus_benign  # noqa: E402
import corpus_malicious  # noqa: E402

BIG_NAME = "big/checkpoint-2gb.pt"


def _entry(root: Path, rel: str, group: str, family: str, fmt: str,
           expected: str) -> dict[str, Any]:
    path = root / rel
    return {"path": rel, "group": group, "family": family, "format": fmt,
            "expected": expected, "bytes": path.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "corpus")
    ap.add_argument("--no-big", action="store_true", help="skip the ~2 GB checkpoint")
    ap.add_argument("--force", action="store_true", help="also rebuild the 2 GB checkpoint")
    ap.add_argument("--folder-count", type=int, default=300)
    args = ap.parse_args()
    root: Path = args.out
    os.environ.setdefault("PYTHONHASHSEED", "0")
    t0 = time.monotonic()
    for sub in ("malicious", "benign", "folder"):
        shutil.rmtree(root / sub, ignore_errors=True)
    entries: list[dict[str, Any]] = []

    for rel, fam, fmt in corpus_malicious.build(root / "malicious"):
        entries.append(_entry(root, f"malicious/{rel}", "malicious", fam, fmt, "malicious"))
    print(f"malicious: {len(entries)} files ({time.monotonic() - t0:.1f}s)", flush=True)

    n = len(entries)
    for rel, fam, fmt in corpus_benign.build(root / "benign"):
        entries.append(_entry(root, f"benign/{rel}", "benign", fam, fmt, "benign"))
    print(f"benign: {len(entries) - n} files ({time.monotonic() - t0:.1f}s)", flush=True)

    n = len(entries)
    for rel, fam, fmt in corpus_benign.small_folder(root / "folder", args.folder_count):
        entries.append(_entry(root, f"folder/{rel}", "folder", fam, fmt, "benign"))
    print(f"folder: {len(entries) - n} files ({time.monotonic() - t0:.1f}s)", flush=True)

    big = root / BIG_NAME
    if not args.no_big:
        if args.force or not big.exists() or big.stat().st_size < 2 * 10**9:
            corpus_benign.big_checkpoint(big)
        entries.append(_entry(root, BIG_NAME, "big", "torch-state-dict-2gb", "torch-zip",
                              "benign"))
        print(f"big: {big.stat().st_size / 2**30:.2f} GiB ({time.monotonic() - t0:.1f}s)",
              flush=True)

    (root / "manifest.json").write_text(json.dumps({
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "marker_prefix": corpus_malicious.MARKER_PREFIX,
        "files": entries}, indent=1))
    print(f"manifest: {len(entries)} entries -> {root / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
