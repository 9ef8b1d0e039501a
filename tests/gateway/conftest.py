"""Gateway fixtures: a real database on both backends, and real model files.

``db``/``engine`` run each test twice: on a SQLite file in the test's temporary folder, and
on the PostgreSQL every machine (CI's included) runs on 127.0.0.1:5432, in a schema of its
own (``t_<uuid>``) dropped afterwards, so concurrent runs never meet. Models are written by
the real libraries (onnx, scikit-learn + skops); the malicious pickle is harmless (it would
only create a marker file), and tests assert it never ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bastion.db import drop_schema
from bastion.gateway.tables import open_db

PG_URL = os.environ.get("BASTION_TEST_PG_URL", "postgresql://postgres@127.0.0.1/test")
SCHEMA = {"shape": [None, 4], "dtype": "float32", "min": 0, "max": 1, "max_batch": 64}


@dataclass(frozen=True)
class Db:
    """A database under test: how to reach it (for subprocesses) and an engine on it."""

    backend: str
    url: str
    schema: str | None
    engine: Engine

    def cli_args(self) -> list[str]:
        return ["--db", self.url, *(["--db-schema", self.schema] if self.schema else [])]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url, schema = PG_URL, f"t_{uuid.uuid4().hex[:20]}"
    engine = open_db(url, schema=schema)
    try:
        yield Db(request.param, url, schema, engine)
    finally:
        if schema is not None:
            drop_schema(engine, schema)
        engine.dispose()


@pytest.fixture
def engine(db: Db) -> Engine:
    return db.engine


def write_onnx(path: Path, seed: int = 0) -> Path:
    """A small real ONNX model: y = x @ W (4 inputs, 2 outputs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    weights = np.random.default_rng(seed).random((4, 2), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, [4, 2], weights.flatten().tolist())])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def write_skops(path: Path) -> Path:
    """A real scikit-learn model saved with skops (no pickle)."""
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.random((40, 4), dtype=np.float32)
    sio.dump(LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int)), path)
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    return write_onnx(tmp_path / "model.onnx")


@pytest.fixture
def skops_model(tmp_path: Path) -> Path:
    return write_skops(tmp_path / "model.skops")


@dataclass(frozen=True)
class Malicious:
    path: Path
    marker: Path  # created only if the pickle ever ran


@pytest.fixture
def malicious_pickle(tmp_path: Path) -> Iterator[Malicious]:
    from tests.scan.payloads import reduce_os_system

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    path.write_bytes(reduce_os_system(str(marker), protocol=4))
    yield Malicious(path, marker)
    assert not marker.exists(), "the malicious pickle ran"


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """A model folder: an ONNX graph, a config and a nested tokenizer file."""
    folder = tmp_path / "folder-model"
    folder.mkdir()
    write_onnx(folder / "model.onnx")
    (folder / "config.json").write_text('{"labels": ["a", "b"]}\n', encoding="utf-8")
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    return folder
