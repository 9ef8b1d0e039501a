"""A corpus with every kind of input a bulk scan meets, and helpers to compare reports.

The corpus: malicious pickles of many techniques (harmless: each would only create a marker
file), clean models written by real libraries (pickle, NumPy, safetensors), archives holding
pickles (zip, tar.gz: the latter's member is named after the file), a requirements file
(audited against the advisory database: never cached), an unclaimed text file, an empty
model, and two files with the same bytes.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.scan import payloads
from tests.scan.test_archive import make_tar, make_zip

from bastion.findings import Report

#: Techniques put in the corpus (a spread of opcodes and gadgets).
TECHNIQUES = ("inst-opcode", "stack-global-memo", "getattr-gadget", "dotted-traversal",
              "extension-code", "nullifai-broken-stream", "functools-partial",
              "padded-prefix")


def build_corpus(root: Path, marker: Path) -> Path:
    """Write the corpus under ``root``/models and return that folder."""
    import numpy as np
    from safetensors.numpy import save_file

    models = root / "models"
    (models / "evil").mkdir(parents=True)
    (models / "clean").mkdir()
    (models / "archives").mkdir()
    for name in TECHNIQUES:
        make = payloads.TECHNIQUES[name][0]
        (models / "evil" / f"{name}.pkl").write_bytes(make(str(marker)))
    evil = payloads.reduce_os_system(str(marker), 2)
    (models / "evil" / "copy-a.bin").write_bytes(evil)  # the same bytes twice
    (models / "clean" / "copy-b.bin").write_bytes(evil)
    (models / "clean" / "weights.pkl").write_bytes(
        pickle.dumps({"layers": [1.0, 2.0, 3.0], "name": "clean"}, protocol=4))
    np.save(models / "clean" / "array.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(models / "clean" / "m.safetensors"))
    (models / "archives" / "bundle.zip").write_bytes(
        make_zip([("model/data.pkl", evil), ("README.md", b"hello")]))
    tar = make_tar([("inner/model.pkl", evil)])
    (models / "archives" / "packed.tar.gz").write_bytes(gzip.compress(tar, mtime=0))
    (models / "archives" / "weights.pkl.gz").write_bytes(gzip.compress(evil, mtime=0))
    (models / "requirements.txt").write_text("urllib3==1.26.4\nrequests\n", encoding="utf-8")
    (models / "NOTES.txt").write_text("not a model\n", encoding="utf-8")
    (models / "clean" / "empty.pt").write_bytes(b"")
    return models


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file a payload would create if it ever ran: it must never exist."""
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "a scanned payload was executed"


@pytest.fixture
def corpus(tmp_path: Path, marker: Path) -> Path:
    return build_corpus(tmp_path / "corpus", marker)


def comparable(report: Report) -> dict[str, Any]:
    """The report as JSON, without what legitimately differs between two runs: the start
    time, the duration and how many files came from the cache."""
    data = report.to_dict()
    data.pop("started")
    data["stats"].pop("seconds")
    data["stats"].pop("cached")
    return data


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
