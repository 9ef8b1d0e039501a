"""Loaders with real models made by the real libraries (scikit-learn with skops and joblib,
ONNX built with onnx.helper, TorchScript, a torch factory with safetensors weights, a plain
callable), the refusals (untrusted skops types, pickles without a clean scan, weights that do
not fit), and the shaping of outputs by permission."""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bastion.gateway import loaders
from bastion.gateway.loaders import (
    LoaderError,
    Prediction,
    _trustable,
    from_outputs,
    load_predictor,
    probabilities,
    shape_output,
)
from bastion.gateway.principals import Permission
from bastion.gateway.schema import InputSchema

IRIS_SCHEMA = InputSchema.parse({"shape": [None, 4], "dtype": "float32", "max_batch": 64})
PREDICT = frozenset({Permission.PREDICT})
SCORES = frozenset({Permission.PREDICT, Permission.SCORES})

HELPERS = '''
import pathlib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

MARKER = pathlib.Path({marker!r})


class EvilScaler(BaseEstimator, TransformerMixin):
    """Looks like a scaler; rebuilding it from a file writes the marker (the 'payload')."""

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        return X

    def __setstate__(self, state):
        MARKER.write_text("EvilScaler was rebuilt")
        self.__dict__.update(state)


class PickleBomb:
    def __reduce__(self):
        return (MARKER.write_text, ("pickle payload ran",))


def threshold(x):
    return (x[:, 0] > 0.5).astype(np.int64)


def two_class_logits(x):
    return np.stack([x[:, 0] * -3.0, x[:, 0] * 3.0], axis=1)


def tiny_net():
    import torch
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def not_a_module():
    return "surprise"


NOT_CALLABLE = 5
'''


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A module of model code, importable by entry point, private to this test."""
    name = f"edge_helpers_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "helpers"
    folder.mkdir()
    (folder / f"{name}.py").write_text(HELPERS.format(marker=str(tmp_path / "MARKER")))
    monkeypatch.syspath_prepend(str(folder))
    module = __import__(name)
    yield module
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.astype(np.float32), data.target


@pytest.fixture(scope="module")
def logreg(iris: tuple[np.ndarray, np.ndarray]) -> Any:
    from sklearn.linear_model import LogisticRegression

    x, y = iris
    return LogisticRegression(max_iter=500).fit(x, y)


# -- scikit-learn ----------------------------------------------------------------------------

def test_sklearn_skops(tmp_path: Path, logreg: Any, iris: tuple[np.ndarray, np.ndarray]) -> None:
    import skops.io

    path = tmp_path / "iris.skops"
    skops.io.dump(logreg, path)
    predictor = load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)
    x = iris[0][:10]
    out = predictor.predict(x)
    assert out.labels == logreg.predict(x).tolist()
    assert out.classes == [0, 1, 2]
    assert out.scores is not None
    np.testing.assert_allclose(out.scores, logreg.predict_proba(x), rtol=1e-6)
    assert predictor.releases_gil is False  # scikit-learn holds it between its steps


def test_sklearn_skops_allowlisted_extra_types(tmp_path: Path,
                                               iris: tuple[np.ndarray, np.ndarray]) -> None:
    import skops.io
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(*iris)
    path = tmp_path / "forest.skops"
    skops.io.dump(forest, path)
    assert "sklearn.tree._tree.Tree" in skops.io.get_untrusted_types(file=path)
    predictor = load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)
    assert predictor.predict(iris[0][:5]).labels == forest.predict(iris[0][:5]).tolist()


def test_sklearn_skops_untrusted_type_refused(tmp_path: Path, helpers: ModuleType,
                                              iris: tuple[np.ndarray, np.ndarray]) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(helpers.EvilScaler(), LogisticRegression(max_iter=500)).fit(*iris)
    path = tmp_path / "evil.skops"
    skops.io.dump(model, path)
    marker = tmp_path / "MARKER"
    with pytest.raises(LoaderError) as info:
        load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)
    assert f"{helpers.__name__}.EvilScaler" in str(info.value)
    assert "outside the sklearn/numpy/scipy allowlist" in str(info.value)
    assert not marker.exists()  # refused before anything was rebuilt
    # The control: trusted by hand, the payload is live.
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def test_sklearn_skops_function_refused(tmp_path: Path,
                                        iris: tuple[np.ndarray, np.ndarray]) -> None:
    import operator

    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(operator.neg),
                          LogisticRegression(max_iter=500)).fit(*iris)
    path = tmp_path / "neg.skops"
    skops.io.dump(model, path)
    with pytest.raises(LoaderError, match=r"_operator\.neg"):
        load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)


@pytest.mark.parametrize(("name", "ok"), [
    ("sklearn.tree._tree.Tree", True),
    ("sklearn.neural_network._stochastic_optimizers.AdamOptimizer", True),
    ("scipy.sparse._csr.csr_matrix", True),
    ("numpy.log1p", True),  # a ufunc
    ("numpy.load", False),  # a function
    ("numpy.lib.npyio.load", False),
    ("builtins.eval", False),
    ("os.system", False),
    ("_operator.neg", False),
    ("sklearn.nonexistent.Thing", False),
    ("sklearn", False),
    ("sklearn.tree._tree.Tree; import os", False),
    ("sklearnx.Tree", False),
])
def test_skops_allowlist(name: str, ok: bool) -> None:
    assert _trustable(name) is ok


def test_sklearn_joblib_needs_clean_scan(tmp_path: Path, logreg: Any,
                                         iris: tuple[np.ndarray, np.ndarray]) -> None:
    import joblib

    path = tmp_path / "iris.joblib"
    joblib.dump(logreg, path)
    with pytest.raises(LoaderError, match="loads only after a clean scan"):
        load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)
    predictor = load_predictor("sklearn", path, input_schema=IRIS_SCHEMA, scan_clean=True)
    assert predictor.predict(iris[0][:3]).labels == logreg.predict(iris[0][:3]).tolist()


def test_pickle_payload_never_runs_without_clean_scan(tmp_path: Path,
                                                      helpers: ModuleType) -> None:
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps(helpers.PickleBomb()))
    with pytest.raises(LoaderError):
        load_predictor("sklearn", path, input_schema=IRIS_SCHEMA)
    with pytest.raises(LoaderError):
        load_predictor("torch", path, factory=f"{helpers.__name__}:tiny_net",
                       input_schema=IRIS_SCHEMA, scan_clean=True)
    assert not (tmp_path / "MARKER").exists()


def test_sklearn_regressor_gives_values(tmp_path: Path,
                                        iris: tuple[np.ndarray, np.ndarray]) -> None:
    import skops.io
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit(iris[0], iris[1].astype(float))
    path = tmp_path / "reg.skops"
    skops.io.dump(model, path)
    out = load_predictor("sklearn", path, input_schema=IRIS_SCHEMA).predict(iris[0][:4])
    assert out.scores is None
    np.testing.assert_allclose(out.labels, model.predict(iris[0][:4]), rtol=1e-6)


# -- ONNX ------------------------------------------------------------------------------------

W = np.array([[1.0, -1.0, 0.5], [0.2, 0.3, -0.4], [-0.6, 0.1, 0.9], [0.0, 0.7, -0.2]],
             dtype=np.float32)
B = np.array([0.1, -0.2, 0.05], dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def onnx_linear(path: Path, *, outputs: str, classes: list[str] | None = None) -> Path:
    """A linear classifier: logits = xW + b, then (by ``outputs``) logits only,
    probabilities, label + probabilities, or label + ZipMap."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["X", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "B"], ["logits"])]
    graph_outputs = []
    if outputs == "logits":
        graph_outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                           ["N", 3]))
    else:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    if outputs in ("label+probabilities", "label+zipmap"):
        nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
        graph_outputs.append(helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    if outputs in ("probabilities", "label+probabilities"):
        graph_outputs.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                                           ["N", 3]))
    if outputs == "label+zipmap":
        nodes.append(helper.make_node("ZipMap", ["probabilities"], ["output_probability"],
                                      domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]))
        graph_outputs.append(helper.make_value_info(
            "output_probability", helper.make_sequence_type_proto(
                helper.make_map_type_proto(TensorProto.INT64,
                                           helper.make_tensor_type_proto(TensorProto.FLOAT,
                                                                         [])))))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        graph_outputs, [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9
    if classes is not None:
        helper.set_model_props(model, {"classes": json.dumps(classes)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


X4 = np.array([[0.1, 0.2, 0.3, 0.4], [3.0, -1.0, 0.0, 2.0], [-2.0, 1.0, 4.0, 0.5]],
              dtype=np.float32)


@pytest.mark.parametrize("outputs", ["logits", "probabilities", "label+probabilities",
                                     "label+zipmap"])
def test_onnx_linear_classifier(tmp_path: Path, outputs: str) -> None:
    path = onnx_linear(tmp_path / "linear.onnx", outputs=outputs)
    predictor = load_predictor("onnx", path, input_schema=IRIS_SCHEMA)
    out = predictor.predict(X4)
    expected = softmax(X4.astype(np.float64) @ W + B)
    assert out.scores is not None
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-6)
    assert out.labels == expected.argmax(axis=1).tolist()
    assert out.classes == [0, 1, 2]
    assert all(type(label) is int for label in out.labels)
    assert predictor.releases_gil is True  # worker lanes may run it side by side


def test_onnx_class_names_and_threads(tmp_path: Path) -> None:
    path = onnx_linear(tmp_path / "named.onnx", outputs="probabilities",
                       classes=["setosa", "versicolor", "virginica"])
    predictor: Any = load_predictor("onnx", path, input_schema=IRIS_SCHEMA)
    out = predictor.predict(X4)
    assert out.classes == ["setosa", "versicolor", "virginica"]
    assert out.labels[1] == ["setosa", "versicolor", "virginica"][
        int(softmax(X4[1:2] @ W + B).argmax())]
    options = predictor.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]
    four: Any = load_predictor("onnx", path, input_schema=IRIS_SCHEMA, threads=4)
    assert four.session.get_session_options().intra_op_num_threads == 4


def test_onnx_float64_schema_is_cast(tmp_path: Path) -> None:
    path = onnx_linear(tmp_path / "linear.onnx", outputs="probabilities")
    schema = InputSchema.parse({"shape": [None, 4], "dtype": "float64"})
    out = load_predictor("onnx", path, input_schema=schema).predict(X4.astype(np.float64))
    assert out.labels == softmax(X4 @ W + B).argmax(axis=1).tolist()


def test_onnx_rank_mismatch_and_garbage(tmp_path: Path) -> None:
    path = onnx_linear(tmp_path / "linear.onnx", outputs="probabilities")
    images = InputSchema.parse({"shape": [None, 2, 2]})
    with pytest.raises(LoaderError, match="rank 2 but the input schema has rank 3"):
        load_predictor("onnx", path, input_schema=images)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(LoaderError, match=r"cannot load junk.onnx with the onnx loader"):
        load_predictor("onnx", junk, input_schema=IRIS_SCHEMA)


# -- torch -----------------------------------------------------------------------------------

def test_torchscript(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    predictor: Any = load_predictor("torchscript", path, input_schema=IRIS_SCHEMA)
    out = predictor.predict(X4.copy())
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X4)), dim=1).numpy()
    assert out.scores is not None
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-6)
    assert out.labels == expected.argmax(axis=1).tolist()
    assert predictor.module.training is False
    assert predictor.releases_gil is True


def test_torch_factory_and_safetensors(tmp_path: Path, helpers: ModuleType) -> None:
    import torch
    from safetensors.torch import save_file

    net = helpers.tiny_net()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # weights that differ from what the factory builds
    path = tmp_path / "model.safetensors"
    save_file(net.state_dict(), str(path))
    factory = f"{helpers.__name__}:tiny_net"
    predictor: Any = load_predictor("torch", path, factory=factory, input_schema=IRIS_SCHEMA)
    out = predictor.predict(X4.copy())
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X4)), dim=1).numpy()
    assert out.scores is not None
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-6)
    assert predictor.module.training is False
    assert predictor.releases_gil is False  # an eager forward is Python between operators
    # The folder form: exactly one .safetensors inside.
    assert load_predictor("torch", tmp_path, factory=factory,
                          input_schema=IRIS_SCHEMA).predict(X4.copy()).labels == out.labels
    float64 = InputSchema.parse({"shape": [None, 4], "dtype": "float64"})
    assert load_predictor("torch", path, factory=factory, input_schema=float64).predict(
        X4.astype(np.float64)).labels == out.labels


def test_torch_weights_must_fit_strictly(tmp_path: Path, helpers: ModuleType) -> None:
    import torch
    from safetensors.torch import save_file

    factory = f"{helpers.__name__}:tiny_net"
    state = helpers.tiny_net().state_dict()
    missing = {k: v for k, v in state.items() if k != "2.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(LoaderError, match="does not fit the architecture"):
        load_predictor("torch", tmp_path / "missing.safetensors", factory=factory,
                       input_schema=IRIS_SCHEMA)
    extra = {**state, "backdoor.weight": torch.zeros(2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(LoaderError, match=r"backdoor\.weight"):
        load_predictor("torch", tmp_path / "extra.safetensors", factory=factory,
                       input_schema=IRIS_SCHEMA)


@pytest.mark.parametrize(("factory", "words"), [
    (None, "module:function"),
    ("no_colon", "module:function"),
    ("os:system; rm", "module:function"),
    ("no_such_module_xyz:f", "cannot import no_such_module_xyz"),
    ("{mod}:missing", "has no missing"),
    ("{mod}:not_a_module", "not a torch.nn.Module"),
    ("{mod}:NOT_CALLABLE", "not callable"),
])
def test_torch_factory_errors(tmp_path: Path, helpers: ModuleType, factory: str | None,
                              words: str) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file(helpers.tiny_net().state_dict(), str(path))
    spec = factory.format(mod=helpers.__name__) if factory else None
    with pytest.raises(LoaderError, match=words):
        load_predictor("torch", path, factory=spec, input_schema=IRIS_SCHEMA)


# -- callable and errors ---------------------------------------------------------------------

def test_callable(helpers: ModuleType) -> None:
    labels = load_predictor("callable", Path("-"), factory=f"{helpers.__name__}:threshold",
                            input_schema=IRIS_SCHEMA)
    out = labels.predict(np.array([[0.9, 0, 0, 0], [0.1, 0, 0, 0]], dtype=np.float32))
    assert out.labels == [1, 0]
    assert out.scores is None
    logits = load_predictor("callable", Path("-"),
                            factory=f"{helpers.__name__}:two_class_logits",
                            input_schema=IRIS_SCHEMA)
    out = logits.predict(np.array([[1.0, 0, 0, 0]], dtype=np.float32))
    assert out.labels == [1]
    assert out.scores is not None
    np.testing.assert_allclose(out.scores, softmax(np.array([[-3.0, 3.0]])))


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="unknown loader"):
        load_predictor("tensorflow", tmp_path, input_schema=IRIS_SCHEMA)
    with pytest.raises(LoaderError, match="does not exist"):
        load_predictor("onnx", tmp_path / "nope.onnx", input_schema=IRIS_SCHEMA)
    other = tmp_path / "model.h5"
    other.write_bytes(b"x")
    with pytest.raises(LoaderError, match=r"reads \.skops, \.joblib or \.pkl"):
        load_predictor("sklearn", other, input_schema=IRIS_SCHEMA)


def test_explain_is_not_implemented(tmp_path: Path) -> None:
    path = onnx_linear(tmp_path / "linear.onnx", outputs="probabilities")
    with pytest.raises(NotImplementedError, match="not available for onnx models"):
        load_predictor("onnx", path, input_schema=IRIS_SCHEMA).explain(X4)


# -- output shaping --------------------------------------------------------------------------

PRED = Prediction(labels=["b", "a"],
                  scores=np.array([[0.1234567, 0.8765433, 0.0], [0.6, 0.3, 0.1]]),
                  classes=["a", "b", "c"])


def test_predict_permission_gets_labels_only() -> None:
    out = shape_output(PRED, PREDICT, precision=3)
    assert out == {"labels": ["b", "a"]}


def test_scores_permission_gets_rounded_probabilities() -> None:
    out = shape_output(PRED, SCORES, precision=2)
    assert out == {"labels": ["b", "a"], "classes": ["a", "b", "c"],
                   "scores": [[0.12, 0.88, 0.0], [0.6, 0.3, 0.1]]}
    json.dumps(out)  # plain JSON, no NumPy values
    assert shape_output(PRED, frozenset({Permission.SCORES}), precision=0)["scores"] == [
        [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_top_k() -> None:
    out = shape_output(PRED, SCORES, precision=3, top_k=2)
    assert out == {"labels": ["b", "a"], "top_k": [
        [{"label": "b", "score": 0.877}, {"label": "a", "score": 0.123}],
        [{"label": "a", "score": 0.6}, {"label": "b", "score": 0.3}]]}
    assert "scores" not in out
    assert "classes" not in out
    assert len(shape_output(PRED, SCORES, precision=3, top_k=99)["top_k"][0]) == 3


def test_no_scores_available_or_no_query_permission() -> None:
    labels_only = Prediction(labels=[1, 0])
    assert shape_output(labels_only, SCORES, precision=3) == {"labels": [1, 0]}
    for held in (frozenset(), frozenset({Permission.EXPLAIN}),
                 frozenset({Permission.DOWNLOAD})):
        with pytest.raises(ValueError, match="predict or scores"):
            shape_output(PRED, held, precision=3)


def test_logits_never_leave(tmp_path: Path) -> None:
    path = onnx_linear(tmp_path / "logits.onnx", outputs="logits")
    out = load_predictor("onnx", path, input_schema=IRIS_SCHEMA).predict(X4 * 10)
    shaped = shape_output(out, SCORES, precision=4)
    rows = np.array(shaped["scores"])
    assert rows.min() >= 0
    assert rows.max() <= 1
    np.testing.assert_allclose(rows.sum(axis=1), 1, atol=1e-3)
    assert set(shaped) == {"labels", "classes", "scores"}


def test_end_to_end_schema_then_model(tmp_path: Path, logreg: Any) -> None:
    """The gateway's order: coerce the JSON inputs, predict, shape."""
    import skops.io

    path = tmp_path / "iris.skops"
    skops.io.dump(logreg, path)
    schema = InputSchema.parse({"shape": [None, 4], "dtype": "float32", "min": 0, "max": 10})
    predictor = load_predictor("sklearn", path, input_schema=schema)
    body = json.loads(textwrap.dedent('{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'))
    out = shape_output(predictor.predict(schema.coerce(body["inputs"])), SCORES, precision=3,
                       top_k=1)
    assert out["labels"] == [0, 2]
    assert [row[0]["label"] for row in out["top_k"]] == [0, 2]


# -- small outputs in plain Python: the same answers as the NumPy path -----------------------

@pytest.mark.parametrize("seed", range(40))
def test_small_outputs_match_the_numpy_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    batch, classes = int(rng.integers(1, 5)), int(rng.integers(2, 12))  # (1: labels)
    kind = seed % 4
    if kind == 0:  # logits, float32 as ONNX Runtime gives them
        raw = rng.normal(scale=20, size=(batch, classes)).astype(np.float32)
    elif kind == 1:  # probabilities already
        raw = rng.random((batch, classes))
        raw /= raw.sum(axis=1, keepdims=True)
    elif kind == 2:  # integer scores
        raw = rng.integers(-50, 50, size=(batch, classes))
    else:  # one row of probabilities, one of logits: softmax for all, as NumPy does
        raw = np.vstack([np.full(classes, 1 / classes), rng.normal(size=classes) + 2])
    assert raw.size <= loaders._SMALL
    expected = probabilities(raw)  # NumPy, whatever the size
    prediction = from_outputs(raw)  # plain Python for a few scores
    assert prediction.scores is not None
    assert prediction.scores.shape == expected.shape
    assert prediction.labels == expected.argmax(axis=1).tolist()  # ties: the first, as NumPy
    np.testing.assert_allclose(prediction.scores, expected, rtol=1e-12, atol=1e-15)


def test_an_output_with_no_classes_is_a_loader_error() -> None:
    for batch in (1, 3):
        with pytest.raises(LoaderError, match=r"shape \(\d, 0\)"):
            from_outputs(np.zeros((batch, 0), dtype=np.float32))


def test_small_and_large_outputs_refuse_nan_and_infinity() -> None:
    for size in (3, loaders._SMALL + 1):
        for bad in (np.nan, np.inf, -np.inf):
            raw = np.zeros((1, size))
            raw[0, size - 1] = bad
            with pytest.raises(LoaderError, match="NaN or infinite"):
                probabilities(raw)
            with pytest.raises(LoaderError, match="NaN or infinite"):
                from_outputs(raw)


def test_rounding_is_exact_and_plain() -> None:
    """Python's round: 0.125 -> 0.12 (half to even, exactly), 2.675 -> 2.67 (the double
    below it); plain floats whose repr is the rounded decimal."""
    pred = Prediction(labels=[0], scores=np.array([[0.125, 2.675, 1 / 3]]), classes=[0, 1, 2])
    scores = shape_output(pred, SCORES, precision=2)["scores"]
    assert scores == [[0.12, 2.67, 0.33]]
    assert [repr(v) for v in scores[0]] == ["0.12", "2.67", "0.33"]
    assert all(type(v) is float for v in scores[0])
