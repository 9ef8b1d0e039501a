"""The model runtimes the gateway serves, and the shaping of their answers by permission.

Only admitted models reach a loader: the registry scanned them, re-checks their digest
before loading, and records whether the scan was clean. Each loader still uses the safest
door its format has:

* ``onnx``: onnxruntime on the CPU execution provider only, one intra-op thread by default
  (several requests run in parallel threads; one thread each is the fastest and fairest);
* ``sklearn``: ``.skops`` through skops, trusting only the extra types it asks for that are
  classes (or NumPy ufuncs) of scikit-learn, NumPy or SciPy — anything else (``builtins.eval``,
  ``os.system``, a function of any module) is refused by name, before anything is built;
  ``.joblib``/``.pkl`` (pickle) only when the admission scan was clean (``scan_clean``);
* ``torchscript``: ``torch.jit.load`` onto the CPU, in eval mode, run without gradients;
* ``torch``: an admin-registered ``module:factory`` builds the architecture (code from the
  installed environment, never from the model folder) and the weights come from safetensors
  (tensors only, no code), loaded strictly: a missing or unexpected tensor is an error;
* ``callable``: a ``module:function`` entry point called with the input array.

Every predictor answers a :class:`Prediction`: labels, and for classifiers the class
probabilities (logits are turned into probabilities here, so they never leave). What a caller
sees is :func:`shape_output`'s: labels only for ``predict``; rounded probabilities, or only
the top-k, for ``scores``. Nothing else — no logits, no raw arrays, no other outputs.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.findings import clip
from bastion.gateway.errors import GatewayError
from bastion.gateway.principals import Permission
from bastion.gateway.schema import InputSchema

if TYPE_CHECKING:
    import numpy as np

LOADERS = ("onnx", "sklearn", "torchscript", "torch", "callable")

#: Top-level packages whose classes a ``.skops`` file may ask to be trusted.
SKOPS_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy")

_ENTRY_POINT = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


class LoaderError(GatewayError):
    """A model cannot be loaded (or is refused by its loader); the message says why."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One batch's answer. ``labels``: one JSON-able value per input. ``scores``: class
    probabilities, shape (batch, classes), rows summing to 1, or ``None`` (a regressor or a
    model that gives labels only). ``classes``: the label of each score column."""

    labels: list[Any]
    scores: np.ndarray[Any, Any] | None = None
    classes: list[Any] | None = None


class Predictor:
    """A loaded model. ``predict`` is thread-safe for every loader."""

    kind = "model"
    #: The model runs without holding the GIL (native code): requests for it gain from
    #: running on several worker lanes at once (see bastion.gateway.lanes.off_gil).
    releases_gil = False

    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        raise NotImplementedError

    def explain(self, x: np.ndarray[Any, Any]) -> dict[str, Any]:
        """Explanations are not implemented for any loader yet: the gateway answers 501."""
        raise NotImplementedError(f"explanations are not available for {self.kind} models")


def load_predictor(loader: str, path: Path, *, factory: str | None = None,
                   input_schema: InputSchema, scan_clean: bool = False,
                   threads: int = 1) -> Predictor:
    """Load an admitted model with the runtime its ``loader`` names.

    ``scan_clean`` says the admission scan found nothing at all: pickle-based files
    (``.joblib``, ``.pkl``) load only then. ``threads``: onnxruntime's intra-op threads.
    """
    if loader not in LOADERS:
        raise LoaderError(f"unknown loader {clip(loader, 40)!r}; use one of "
                          f"{', '.join(LOADERS)}")
    if loader != "callable" and not path.exists():
        raise LoaderError(f"model file {path} does not exist")
    try:
        if loader == "onnx":
            return _OnnxPredictor(path, input_schema, threads)
        if loader == "sklearn":
            return _SklearnPredictor(_load_sklearn(path, scan_clean))
        if loader == "torchscript":
            return _TorchPredictor(_load_torchscript(path), "torchscript")
        if loader == "torch":
            return _TorchPredictor(_load_torch(path, factory), "torch")
        return _CallablePredictor(factory)
    except LoaderError:
        raise
    except Exception as exc:  # a runtime's own error: one clear line, no traceback
        raise LoaderError(f"cannot load {path.name} with the {loader} loader: "
                          f"{type(exc).__name__}: {clip(str(exc), 300)}") from None


def resolve_entry_point(spec: str | None, what: str) -> Any:
    """The object ``module:attr`` names (imported from the installed environment)."""
    if not spec or not _ENTRY_POINT.fullmatch(spec):
        raise LoaderError(f"the {what} must be given as module:function, not "
                          f"{clip(str(spec), 80)!r}")
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoaderError(f"cannot import {module_name} for the {what}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoaderError(f"{module_name} has no {attr} (the {what})") from None
    return obj


# -- post-processing shared by the loaders ---------------------------------------------------

def _plain(values: Iterable[Any]) -> list[Any]:
    """NumPy scalars and bytes as JSON-able Python values."""
    out = []
    for value in values:
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        out.append(value)
    return out


#: Outputs of at most this many scores are post-processed in plain Python: for a few
#: classes, NumPy's per-call cost is most of the work (a (1, 10) output: ~6 against ~14 µs
#: for the probabilities, measured on the gateway benchmark's small model).
_SMALL = 64


def probabilities(raw: Any) -> np.ndarray[Any, Any]:
    """Class probabilities from a (batch, classes) output: kept when they already are
    probabilities (in [0, 1], rows summing to 1), else read as logits (softmax)."""
    import numpy as np

    arr = np.asarray(raw, dtype=np.float64)
    smallest, largest = arr.min().item(), arr.max().item()  # NaN in either if in any
    if not (math.isfinite(smallest) and math.isfinite(largest)):
        raise LoaderError("the model produced NaN or infinite scores")
    sums = arr.sum(axis=1)
    # (np.allclose costs ~20 µs on a tiny array; this is the same test, atol only)
    if smallest >= 0.0 and largest <= 1.0 and float(np.abs(sums - 1.0).max()) <= 1e-3:
        return arr / sums[:, None]  # type: ignore[no-any-return]
    shifted = np.exp(arr - arr.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _small_probabilities(rows: list[list[float]]) -> list[list[float]]:
    """:func:`probabilities` of a few scores (rows of at least one), as lists: the same
    test and formulas, in Python floats (equal to NumPy's results to ~1e-15; the sums are
    exact)."""
    if not all(map(math.isfinite, (v for row in rows for v in row))):
        raise LoaderError("the model produced NaN or infinite scores")
    sums = [math.fsum(row) for row in rows]
    if (all(0.0 <= v <= 1.0 for row in rows for v in row)
            and all(abs(total - 1.0) <= 1e-3 for total in sums)):
        return [[v / total for v in row] for row, total in zip(rows, sums, strict=True)]
    out = []
    for row in rows:
        top = max(row)
        shifted = [math.exp(v - top) for v in row]
        total = math.fsum(shifted)
        out.append([v / total for v in shifted])
    return out


def from_outputs(outputs: Any, classes: list[Any] | None = None) -> Prediction:
    """A prediction from a raw model output: a (batch, classes) array is read as scores
    (labels are the most likely class), a (batch,) or (batch, 1) array as labels or values."""
    import numpy as np

    if isinstance(outputs, Prediction):
        return outputs
    arr = np.asarray(outputs)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 1:
        return Prediction(_plain(arr))
    if arr.ndim != 2 or arr.dtype.kind not in "fiu" or not arr.shape[1]:
        raise LoaderError(f"the model's output has shape {arr.shape} and dtype {arr.dtype}; "
                          "expected (batch,) labels or (batch, classes) scores")
    names = classes if classes is not None and len(classes) == arr.shape[1] else list(
        range(arr.shape[1]))
    if arr.size <= _SMALL:
        rows = _small_probabilities(arr.tolist())
        best = [row.index(max(row)) for row in rows]  # the first most likely, as argmax
        return Prediction([names[i] for i in best], np.array(rows, dtype=np.float64), names)
    scores = probabilities(arr)
    return Prediction([names[i] for i in scores.argmax(axis=1).tolist()], scores, names)


def shape_output(prediction: Prediction, permissions: frozenset[Permission], *,
                 precision: int, top_k: int | None = None) -> dict[str, Any]:
    """What a caller holding ``permissions`` may see of ``prediction``.

    ``predict`` only: ``{"labels": [...]}``. ``scores``: also the probabilities rounded to
    ``precision`` decimals — all of them with their ``classes``, or with ``top_k`` only the
    k most likely as ``{"label", "score"}`` pairs per input. Rounding and top-k are the output
    hardening against extraction and membership inference: the fewer digits, the less signal.
    """
    if Permission.SCORES not in permissions and Permission.PREDICT not in permissions:
        raise ValueError("shape_output needs the predict or scores permission")
    out: dict[str, Any] = {"labels": list(prediction.labels)}
    if Permission.SCORES not in permissions or prediction.scores is None:
        return out
    import numpy as np

    raw = np.asarray(prediction.scores, dtype=np.float64)
    # Python's round: exact decimal rounding, and the shortest repr of what it gives.
    scores = [[round(v, precision) for v in row] for row in raw.tolist()]
    classes = prediction.classes or list(range(raw.shape[1]))
    if top_k is None:
        out["classes"] = list(classes)
        out["scores"] = scores
        return out
    k = max(1, min(top_k, raw.shape[1]))
    order = np.argsort(-raw, axis=1, kind="stable")[:, :k]
    out["top_k"] = [[{"label": classes[j], "score": scores[i][j]} for j in row]
                    for i, row in enumerate(order.tolist())]
    return out


# -- onnx ------------------------------------------------------------------------------------

_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
              "tensor(bool)": "bool", "tensor(float16)": "float16"}


class _OnnxPredictor(Predictor):
    kind = "onnx"
    releases_gil = True  # InferenceSession.run releases it

    def __init__(self, path: Path, schema: InputSchema, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise LoaderError(f"the ONNX model takes {len(inputs)} inputs; the gateway feeds "
                              "one")
        self.input_name = inputs[0].name
        self.input_dtype = _ORT_TYPES.get(inputs[0].type)
        if self.input_dtype is None:
            raise LoaderError(f"the ONNX model's input type {inputs[0].type} is not supported")
        declared = inputs[0].shape
        if isinstance(declared, list) and len(declared) != schema.rank:
            raise LoaderError(f"the ONNX model's input has rank {len(declared)} but the input "
                              f"schema has rank {schema.rank}")
        self.label_output, self.score_output = _pick_outputs(self.session.get_outputs())
        self.classes = _metadata_classes(self.session)
        self.output_names = [n for n in (self.label_output, self.score_output) if n]

    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        import numpy as np

        feed = {self.input_name: x.astype(self.input_dtype, copy=False)}
        results = dict(zip(self.output_names, self.session.run(self.output_names, feed),
                           strict=True))
        labels = results.get(self.label_output) if self.label_output else None
        raw = results.get(self.score_output) if self.score_output else None
        if raw is None:
            return from_outputs(labels)
        classes = self.classes
        if isinstance(raw, list):  # ZipMap: one {class: probability} per input
            if not raw:
                raise LoaderError("the model answered no scores")
            keys = list(raw[0].keys())
            classes = classes or _plain(keys)
            raw = np.array([[row[k] for k in keys] for row in raw], dtype=np.float64)
        prediction = from_outputs(raw, classes)
        if labels is not None:
            flat = np.asarray(labels).reshape(-1)
            return Prediction(_plain(flat), prediction.scores, prediction.classes)
        return prediction


def _pick_outputs(outputs: list[Any]) -> tuple[str | None, str | None]:
    """The output holding labels and the one holding scores (skl2onnx's pair, or a
    single (batch, classes) tensor of probabilities or logits)."""
    label = score = None
    for out in outputs:
        kind = out.type
        rank = len(out.shape) if isinstance(out.shape, list) else None
        if kind.startswith("seq(map(") and score is None:
            score = out.name
        elif kind in ("tensor(int64)", "tensor(string)", "tensor(int32)") and label is None:
            label = out.name
        elif kind in ("tensor(float)", "tensor(double)") and score is None:
            if rank == 1 and label is None:
                label = out.name  # a regressor's values
            elif rank != 1:
                score = out.name
    if label is None and score is None:
        raise LoaderError("the ONNX model has no output the gateway can read (labels or a "
                          "(batch, classes) score tensor)")
    return label, score


def _metadata_classes(session: Any) -> list[Any] | None:
    """Class names from the model's ``classes`` metadata (a JSON list), when present."""
    meta = session.get_modelmeta().custom_metadata_map
    text = meta.get("classes")
    if not text or len(text) > 1 << 20:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


# -- scikit-learn ----------------------------------------------------------------------------

def _load_sklearn(path: Path, scan_clean: bool) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".skops":
        import skops.io

        untrusted = skops.io.get_untrusted_types(file=path)
        refused = [name for name in untrusted if not _trustable(name)]
        if refused:
            shown = ", ".join(clip(n, 120) for n in refused[:10])
            more = f" and {len(refused) - 10} more" if len(refused) > 10 else ""
            raise LoaderError(f"{path.name} asks to trust types outside the "
                              f"{'/'.join(SKOPS_TRUSTED_PACKAGES)} allowlist: {shown}{more}; "
                              "refusing to load it")
        return skops.io.load(path, trusted=list(untrusted))
    if suffix in _PICKLE_SUFFIXES:
        if not scan_clean:
            raise LoaderError(f"{path.name} is a pickle: it loads only after a clean scan "
                              "(re-admit it, or convert it to .skops or ONNX)")
        import joblib

        return joblib.load(path)
    raise LoaderError(f"{path.name}: the sklearn loader reads .skops, .joblib or .pkl files")


def _trustable(name: str) -> bool:
    """Whether a type a ``.skops`` file asks for is a class (or ufunc) of an allowed package.

    The name is resolved by importing the allowed library's own module — never anything
    from the file — so a function (``numpy.load``) or another package's name is refused."""
    if not isinstance(name, str) or len(name) > 300 or not _DOTTED.fullmatch(name):
        return False
    parts = name.split(".")
    if parts[0] not in SKOPS_TRUSTED_PACKAGES:
        return False
    import numpy as np

    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        module = getattr(obj, "__module__", None) or ""
        if isinstance(obj, np.ufunc):
            return True
        return isinstance(obj, type) and module.split(".")[0] in SKOPS_TRUSTED_PACKAGES
    return False


class _SklearnPredictor(Predictor):
    kind = "sklearn"

    def __init__(self, model: Any) -> None:
        if not hasattr(model, "predict"):
            raise LoaderError(f"the loaded object ({type(model).__name__}) has no predict()")
        self.model = model
        self.has_proba = hasattr(model, "predict_proba")
        classes = getattr(model, "classes_", None)
        self.classes = _plain(classes) if classes is not None else None

    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        if self.has_proba and self.classes is not None and len(self.classes) > 1:
            proba = self.model.predict_proba(x)
            return from_outputs(proba, self.classes)
        return from_outputs(self.model.predict(x))


# -- torch -----------------------------------------------------------------------------------

def _load_torchscript(path: Path) -> Any:
    import torch

    module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    module.eval()
    return module


def _load_torch(path: Path, factory: str | None) -> Any:
    import torch
    from safetensors.torch import load_file

    build = resolve_entry_point(factory, "model factory")
    if not callable(build):
        raise LoaderError(f"the model factory {factory} is not callable")
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors"))
        if len(candidates) != 1:
            raise LoaderError(f"{path.name}: a torch model folder must hold exactly one "
                              f".safetensors file (found {len(candidates)})")
        path = candidates[0]
    if path.suffix.lower() != ".safetensors":
        raise LoaderError(f"{path.name}: the torch loader reads weights from .safetensors only")
    module = build()
    if not isinstance(module, torch.nn.Module):
        raise LoaderError(f"the model factory {factory} returned a {type(module).__name__}, "
                          "not a torch.nn.Module")
    state = load_file(str(path), device="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LoaderError(f"{path.name} does not fit the architecture {factory} builds: "
                          f"{clip(str(exc), 400)}") from None
    module.eval()
    return module


class _TorchPredictor(Predictor):
    def __init__(self, module: Any, kind: str) -> None:
        self.module = module
        self.kind = kind
        # A TorchScript module runs in C++ without the GIL; an eager module's Python
        # forward holds it between operators.
        self.releases_gil = kind == "torchscript"
        # Feed floats in the precision of the weights (a float64 schema, a float32 model).
        first = next(iter(module.parameters()), None)
        self.float_dtype = first.dtype if first is not None and first.is_floating_point() \
            else None

    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        import torch

        tensor = torch.from_numpy(x)
        if self.float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self.float_dtype)
        with torch.inference_mode():
            out = self.module(tensor)
        if isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise LoaderError(f"the model returned a {type(out).__name__}, not a tensor")
        return from_outputs(out.detach().float().numpy()
                            if out.dtype.is_floating_point else out.numpy())


# -- callable --------------------------------------------------------------------------------

class _CallablePredictor(Predictor):
    kind = "callable"

    def __init__(self, entry_point: str | None) -> None:
        fn = resolve_entry_point(entry_point, "entry point")
        if not callable(fn):
            raise LoaderError(f"the entry point {entry_point} is not callable")
        self.fn: Callable[[Any], Any] = fn

    def predict(self, x: np.ndarray[Any, Any]) -> Prediction:
        return from_outputs(self.fn(x))
