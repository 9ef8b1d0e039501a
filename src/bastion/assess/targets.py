"""The model under assessment, seen through the doors an attacker has.

A :class:`Target` answers queries (:meth:`Target.predict_proba`), counts every sample it is
asked about — the figure an inference API would see, and the one the report states per
attack — and stops at a query budget when one is set. Some targets also open the white-box
door: :class:`TorchTarget` gives its module (gradients through autograd) and
:class:`SklearnTarget` gives ART's gradient-capable wrapper where ART has one (logistic
regression, SVC). Black-box targets (:class:`PredictorTarget` for ONNX models and plain
callables, :class:`EndpointTarget` for a live gateway) are attacked with queries only.

Model files are loaded only after ``bastion scan`` passes them, and only by loaders that do
not run code from the file: TorchScript, ONNX, skops with scikit-learn/NumPy/SciPy types, and
pickle/joblib only when the scan found nothing at all. When the gateway's loaders
(``bastion.gateway.loaders.load_predictor``) are installed they are asked first, so a model
is assessed exactly as it would be served.
"""

from __future__ import annotations

import importlib
import importlib.util
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from bastion.errors import InputError

if TYPE_CHECKING:
    from bastion.assess.data import EvalData

#: Samples per call into the model: bounds memory on large evaluation sets.
BATCH = 1024

Probabilities = NDArray[np.float32]


class BudgetExhausted(Exception):
    """The target's query budget would be exceeded by this query."""

    def __init__(self, spent: int, budget: int) -> None:
        super().__init__(f"query budget exhausted: {spent} of {budget} queries spent")
        self.spent = spent
        self.budget = budget


class QueriesRefused(Exception):
    """The target refused to answer: a live gateway's detector blocked the query
    (``blocked_extraction``, ``blocked_adversarial``) or its quota is spent (``rate_limited``).
    ``answered``: the queries it had answered before."""

    def __init__(self, code: str, message: str, answered: int) -> None:
        super().__init__(f"the gateway refused the query ({code}) after {answered} answered "
                         f"queries: {message}")
        self.code = code
        self.message = message
        self.answered = answered

    def again(self, answered: int) -> QueriesRefused:
        """The same refusal for a later query (a flagged principal stays refused)."""
        return QueriesRefused(self.code, self.message, answered)


@dataclass(frozen=True, slots=True)
class ShadowModel:
    """An untrained model of the target's family (or a stand-in): fit, then predict."""

    fit: Callable[[NDArray[np.float32], NDArray[np.int64]], Callable[
        [NDArray[np.float32]], Probabilities]]
    family: str


class Target(ABC):
    """A classifier under assessment; every query goes through :meth:`predict_proba`."""

    #: True when the model only answers labels (one-hot), never scores.
    labels_only: bool = False

    def __init__(self, name: str, input_shape: tuple[int, ...], n_classes: int,
                 clip_values: tuple[float, float], budget: int | None = None) -> None:
        self.name = name
        self.input_shape = input_shape
        self.n_classes = n_classes
        self.clip_values = clip_values
        self.budget = budget
        self._queries = 0

    # -- queries -----------------------------------------------------------------------------

    @property
    def queries(self) -> int:
        """Samples asked about so far (white-box gradient computations are not queries)."""
        return self._queries

    def predict_proba(self, x: NDArray[Any]) -> Probabilities:
        """Class scores for ``x`` (n, *input_shape), counted as ``n`` queries."""
        n = int(x.shape[0])
        if self.budget is not None and self._queries + n > self.budget:
            raise BudgetExhausted(self._queries, self.budget)
        self._queries += n
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [self._scores(x[i:i + BATCH]) for i in range(0, n, BATCH)]
        out = np.concatenate(parts) if parts else np.zeros((0, self.n_classes), np.float32)
        return out.astype(np.float32, copy=False)

    def predict(self, x: NDArray[Any]) -> NDArray[np.int64]:
        labels: NDArray[np.int64] = self.predict_proba(x).argmax(1).astype(np.int64)
        return labels

    @abstractmethod
    def _scores(self, x: NDArray[np.float32]) -> Probabilities:
        """Scores for one batch: (n, n_classes), rows summing to one."""

    # -- what an attacker may get besides queries ----------------------------------------------

    @property
    def white_box(self) -> bool:
        """True when gradients of the loss with respect to the input are available."""
        return False

    @property
    def family(self) -> str:
        """What kind of model this is, for the report."""
        return type(self).__name__

    def art_blackbox(self) -> Any:
        """ART's view through queries only (HopSkipJump, membership-inference attacks).

        Inputs are fed as float32: ART 1.20's HopSkipJump breaks under NumPy 2 otherwise
        (ART issue #2475)."""
        from art.estimators.classification import BlackBoxClassifier

        def predict(x: NDArray[Any]) -> Probabilities:
            return self.predict_proba(np.asarray(x, dtype=np.float32))

        return BlackBoxClassifier(predict, self.input_shape, self.n_classes,
                                  clip_values=self.clip_values)

    def shadow(self, seed: int) -> ShadowModel:
        """Shadow models for membership inference. The attacker is assumed not to know the
        architecture unless the target says so: a scikit-learn MLP stands in."""
        from sklearn.neural_network import MLPClassifier

        classes = self.n_classes

        def fit(x: NDArray[np.float32], y: NDArray[np.int64]) -> Callable[
                [NDArray[np.float32]], Probabilities]:
            model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed)
            quietly(model.fit, x.reshape(len(x), -1), y)
            return lambda z: _full_proba(model, z.reshape(len(z), -1), classes)

        return ShadowModel(fit, "MLP stand-in (architecture unknown to the attacker)")


def quietly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a library function with its warnings silenced (convergence, deprecations):
    they are about the attack's own helper models, not about the model under assessment."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _full_proba(model: Any, x: NDArray[Any], n_classes: int) -> Probabilities:
    """``predict_proba`` spread over all classes: a model fitted on a subset of the classes
    returns fewer columns than there are classes."""
    proba = np.asarray(model.predict_proba(x), dtype=np.float32)
    classes = np.asarray(model.classes_).astype(np.int64)
    if proba.shape[1] == n_classes and (classes == np.arange(n_classes)).all():
        return proba
    out = np.zeros((len(x), n_classes), dtype=np.float32)
    out[:, classes] = proba
    return out


class SklearnTarget(Target):
    """A fitted scikit-learn classifier. Images are flattened to the 2-D rows it expects."""

    def __init__(self, estimator: Any, name: str, input_shape: tuple[int, ...],
                 n_classes: int, clip_values: tuple[float, float],
                 budget: int | None = None) -> None:
        super().__init__(name, input_shape, n_classes, clip_values, budget)
        self.estimator = estimator
        self.labels_only = not hasattr(estimator, "predict_proba")
        self._art: Any = None

    def _scores(self, x: NDArray[np.float32]) -> Probabilities:
        flat = x.reshape(len(x), -1)
        if self.labels_only:
            labels = np.asarray(self.estimator.predict(flat)).astype(np.int64)
            return np.eye(self.n_classes, dtype=np.float32)[labels]
        return _full_proba(self.estimator, flat, self.n_classes)

    @property
    def family(self) -> str:
        return f"scikit-learn {type(self.estimator).__name__}"

    def art_whitebox(self) -> Any | None:
        """ART's gradient-capable wrapper (on flattened inputs), or None without one."""
        if self._art is None:
            from art.estimators.classification import SklearnClassifier
            from art.estimators.classification.classifier import ClassGradientsMixin

            classifier = quietly(SklearnClassifier, self.estimator, clip_values=self.clip_values)
            self._art = classifier if isinstance(classifier, ClassGradientsMixin) else False
        return self._art or None

    @property
    def white_box(self) -> bool:
        return self.art_whitebox() is not None

    def shadow(self, seed: int) -> ShadowModel:
        """Shadow models of the target's own algorithm and hyper-parameters (Shokri et al.'s
        strongest attacker): ``sklearn.base.clone`` of the estimator."""
        from sklearn.base import clone

        classes = self.n_classes

        def fit(x: NDArray[np.float32], y: NDArray[np.int64]) -> Callable[
                [NDArray[np.float32]], Probabilities]:
            model = clone(self.estimator)
            if "random_state" in model.get_params():
                model.set_params(random_state=seed)
            quietly(model.fit, x.reshape(len(x), -1), y)
            return lambda z: _full_proba(model, z.reshape(len(z), -1), classes)

        return ShadowModel(fit, f"clones of {type(self.estimator).__name__}")


class TorchTarget(Target):
    """A PyTorch module (or TorchScript) returning logits, or probabilities when it says so.

    ``trainer``, when given, trains a fresh module of the same architecture (shadow models);
    a model loaded from a file has none, and shadow models fall back to the stand-in."""

    def __init__(self, module: Any, name: str, input_shape: tuple[int, ...], n_classes: int,
                 clip_values: tuple[float, float], *, outputs_probabilities: bool = False,
                 trainer: Callable[[NDArray[np.float32], NDArray[np.int64], int], Any]
                 | None = None, budget: int | None = None) -> None:
        super().__init__(name, input_shape, n_classes, clip_values, budget)
        self.module = module.eval()
        self.outputs_probabilities = outputs_probabilities
        self.trainer = trainer

    @property
    def white_box(self) -> bool:
        return True

    @property
    def family(self) -> str:
        return f"PyTorch {type(self.module).__name__}"

    def logits(self, x: Any) -> Any:
        """The module's output as log-scores (a torch tensor), for the loss of an attack."""
        import torch

        out = self.module(x)
        return torch.log(out.clamp_min(1e-12)) if self.outputs_probabilities else out

    def _scores(self, x: NDArray[np.float32]) -> Probabilities:
        import torch

        with torch.no_grad():
            out = self.logits(torch.from_numpy(x))
            return torch.softmax(out, dim=1).numpy().astype(np.float32)

    def art_whitebox(self) -> Any:
        """ART's PyTorchClassifier on this module (used to validate Bastion's own PGD)."""
        import torch
        from art.estimators.classification import PyTorchClassifier

        return PyTorchClassifier(
            model=self.module, loss=torch.nn.CrossEntropyLoss(), input_shape=self.input_shape,
            nb_classes=self.n_classes, clip_values=self.clip_values, device_type="cpu")

    def shadow(self, seed: int) -> ShadowModel:
        trainer = self.trainer
        if trainer is None:
            return super().shadow(seed)
        classes = self.n_classes

        def fit(x: NDArray[np.float32], y: NDArray[np.int64]) -> Callable[
                [NDArray[np.float32]], Probabilities]:
            module = trainer(x, y, seed)
            twin = TorchTarget(module, "shadow", self.input_shape, classes, self.clip_values)
            return twin.predict_proba

        return ShadowModel(fit, f"same architecture ({type(self.module).__name__}), "
                                "same training recipe")


class PredictorTarget(Target):
    """Any callable from a batch to class scores (ONNX Runtime, the gateway's predictors)."""

    def __init__(self, fn: Callable[[NDArray[np.float32]], Any], name: str,
                 input_shape: tuple[int, ...], n_classes: int,
                 clip_values: tuple[float, float], *, family: str = "black box",
                 labels_only: bool = False, budget: int | None = None) -> None:
        super().__init__(name, input_shape, n_classes, clip_values, budget)
        self._fn = fn
        self._family = family
        self.labels_only = labels_only

    @property
    def family(self) -> str:
        return self._family

    def _scores(self, x: NDArray[np.float32]) -> Probabilities:
        return _as_scores(self._fn(x), len(x), self.n_classes, self.labels_only)


def _as_scores(raw: Any, n: int, n_classes: int, labels_only: bool) -> Probabilities:
    """Normalise a model's answer: labels become one-hot rows, logits become softmax."""
    out: NDArray[Any] = np.asarray(raw)
    if out.ndim == 1 or labels_only:
        labels = out.astype(np.int64) if out.ndim == 1 else out.argmax(1)
        if labels.shape != (n,) or labels.min(initial=0) < 0 or labels.max(initial=0) >= n_classes:
            raise InputError(f"the model answered labels of shape {out.shape} for {n} samples "
                             f"of {n_classes} classes")
        one_hot: Probabilities = np.eye(n_classes, dtype=np.float32)[labels]
        return one_hot
    if out.shape != (n, n_classes):
        raise InputError(f"the model answered shape {out.shape}; expected ({n}, {n_classes}) "
                         "class scores")
    scores: Probabilities = out.astype(np.float32)
    if not np.isfinite(scores).all():
        raise InputError("the model answered NaN or infinite scores")
    if (scores >= 0).all() and np.allclose(scores.sum(1), 1.0, atol=1e-3):
        return scores
    shifted = np.exp(scores - scores.max(1, keepdims=True))
    softmax: Probabilities = (shifted / shifted.sum(1, keepdims=True)).astype(np.float32)
    return softmax


class EndpointTarget(Target):
    """A model behind a live gateway: black-box, every query through the gateway's API and
    counted against the principal's quota (``budget`` should not exceed it).

    ``send`` is the transport (a function from a batch to the endpoint's answer):
    :class:`bastion.assess.endpoint.EndpointClient` over HTTP, as
    :func:`bastion.assess.endpoint.endpoint_target` builds it. Without it every query raises
    a clear error. ``refusals`` keeps the first refusal of each kind (a detector's block, a
    spent quota), which the report states with the number of queries answered before it."""

    def __init__(self, url: str, api_key: str | None, input_shape: tuple[int, ...],
                 n_classes: int, clip_values: tuple[float, float], *,
                 send: Callable[[NDArray[np.float32]], Any] | None = None,
                 labels_only: bool = False, budget: int | None = None) -> None:
        super().__init__(url, input_shape, n_classes, clip_values, budget)
        self.url = url
        self._api_key = api_key  # never logged, never part of the report
        self._send = send
        self.labels_only = labels_only
        self.refusals: dict[str, QueriesRefused] = {}
        #: The transport, when it reports more than answers (the HTTP client's counters).
        self.client: Any = None

    @property
    def family(self) -> str:
        return "live endpoint"

    def _scores(self, x: NDArray[np.float32]) -> Probabilities:
        if self._send is None:
            raise InputError(f"{self.url}: assessing a live endpoint needs a transport "
                             "(bastion.assess.endpoint.endpoint_target)")
        try:
            answer = self._send(x)
        except QueriesRefused as exc:
            self.refusals.setdefault(exc.code, exc)
            raise
        return _as_scores(answer, len(x), self.n_classes, self.labels_only)

    def __repr__(self) -> str:
        return f"EndpointTarget({self.url!r}, queries={self.queries})"


# -- loading model files -------------------------------------------------------------------------

_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")


def load_target(path: str | Path, data: EvalData, *, factory: str | None = None) -> Target:
    """A model file as a :class:`Target`, after ``bastion scan`` has passed it.

    ``factory`` (``module:function``) builds the architecture for PyTorch weights in
    safetensors, as the gateway's ``torch`` loader does."""
    from bastion.findings import Severity

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    report = _scan(path)
    failing = [f for f in report.active if f.severity >= Severity.MEDIUM]
    if failing:
        first = failing[0]
        raise InputError(
            f"{path}: refusing to load a model that fails `bastion scan` ({len(failing)} "
            f"finding(s), first: {first.rule_id}: {first.message})",
            hint="run `bastion scan` on it; assess only models that pass")
    scan_clean = not report.active
    loader = _loader_for(path, factory)
    if loader == "sklearn" and path.suffix.lower() != ".skops" and not scan_clean:
        raise InputError(f"{path}: a pickle is loaded only when `bastion scan` finds nothing "
                         f"at all in it ({len(report.active)} finding(s))",
                         hint="convert the model to .skops or ONNX")
    args = (str(path), data.input_shape, data.n_classes, data.clip_values)
    target = _from_gateway(loader, path, factory, data, scan_clean)
    if target is None:
        target = _direct(loader, path, args)
    _fit_to_data(target, data, path)
    return target


def _fit_to_data(target: Target, data: EvalData, path: Path) -> None:
    """Check on a few samples that the model takes the data and answers its classes, before
    any attack runs (a shape error deep inside an attack would say nothing useful)."""
    sample = data.holdout.x[:8]
    try:
        if isinstance(target, TorchTarget):
            target.outputs_probabilities = _looks_like_probabilities(target, sample)
        classes = _model_classes(target, sample)
    except InputError:
        raise
    except Exception as exc:  # the model's own error on this input: say what was fed
        raise InputError(f"{path}: the model fails on the data's samples of shape "
                         f"{data.input_shape}: {type(exc).__name__}: {str(exc)[:300]}") from None
    if classes < data.n_classes:
        raise InputError(f"{path}: the model answers {classes} classes, but the data has "
                         f"labels up to {data.n_classes - 1}")
    target.n_classes = classes


def _model_classes(target: Target, sample: NDArray[np.float32]) -> int:
    """How many classes the model answers (its output width; for scikit-learn, its largest
    class index + 1, since a model may know classes the evaluation data lacks)."""
    if isinstance(target, SklearnTarget):
        known = np.asarray(getattr(target.estimator, "classes_", []))
        if known.dtype.kind not in "iu" or known.size == 0 or known.min() < 0:
            raise InputError(f"{target.name}: the model's classes are "
                             f"{known.tolist()[:5]}; only integer class indices are supported")
        target.estimator.predict(sample.reshape(len(sample), -1))
        return int(known.max()) + 1
    if isinstance(target, TorchTarget):
        import torch

        with torch.no_grad():
            return int(target.logits(torch.from_numpy(np.ascontiguousarray(sample))).shape[1])
    if isinstance(target, PredictorTarget):
        raw = np.asarray(target._fn(sample))
        if raw.ndim == 2 and raw.dtype.kind == "f" and raw.shape[1] > 1:
            return int(raw.shape[1])
    return target.n_classes


def _loader_for(path: Path, factory: str | None) -> str:
    """The gateway loader name for a model file, decided by suffix and content."""
    suffix = path.suffix.lower()
    if factory is not None or suffix == ".safetensors" or path.is_dir():
        if factory is None:
            raise InputError(f"{path}: PyTorch weights need the architecture: pass --factory "
                             "module:function")
        return "torch"
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".skops", *_PICKLE_SUFFIXES):
        return "sklearn"
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            raise InputError(f"{path}: a PyTorch checkpoint (weights or a pickled module) has "
                             "no architecture to rebuild safely",
                             hint="export it with torch.jit.script/trace, or save the weights "
                                  "as safetensors and pass --factory module:function")
    raise InputError(f"{path}: not a model format `bastion assess` can load",
                     hint="TorchScript, ONNX, .skops, scikit-learn .joblib/.pkl, or "
                          "safetensors weights with --factory")


def _scan(path: Path) -> Any:
    from bastion.scan import scan_path

    return scan_path(path)


def _from_gateway(loader: str, path: Path, factory: str | None, data: EvalData,
                  scan_clean: bool) -> Target | None:
    """Load with the gateway's own loaders when they are installed (the ``gateway`` extra),
    so a model is assessed exactly as it is served. None when they are not."""
    if importlib.util.find_spec("bastion.gateway") is None:
        return None
    try:
        loaders = importlib.import_module("bastion.gateway.loaders")
        schema = importlib.import_module("bastion.gateway.schema")
    except ImportError:  # the gateway's dependencies (pydantic, ...) are not installed
        return None
    low, high = data.clip_values
    input_schema = schema.InputSchema(shape=[None, *data.input_shape], dtype="float32",
                                      min=low, max=high, max_batch=1 << 20,
                                      max_elements=1 << 28)
    try:
        predictor = loaders.load_predictor(loader, path, factory=factory,
                                           input_schema=input_schema, scan_clean=scan_clean)
    except loaders.LoaderError as exc:
        raise InputError(f"{path}: {exc}") from None
    args = (str(path), data.input_shape, data.n_classes, data.clip_values)
    module = getattr(predictor, "module", None)
    if module is not None:
        return TorchTarget(module, *args)
    model = getattr(predictor, "model", None)
    if model is not None and hasattr(model, "predict"):
        return SklearnTarget(model, *args)

    def answer(x: NDArray[np.float32]) -> Any:
        prediction = predictor.predict(x)
        if prediction.scores is not None:
            return prediction.scores
        classes = prediction.classes
        return np.array([classes.index(v) if classes else v for v in prediction.labels])

    return PredictorTarget(answer, *args, family=f"gateway {predictor.kind} loader")


def _direct(loader: str, path: Path, args: tuple[str, tuple[int, ...], int,
                                                 tuple[float, float]]) -> Target:
    """The same safe doors, without the gateway installed."""
    if loader == "onnx":
        return _onnx(path, *args)
    if loader == "torchscript":
        import torch

        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return TorchTarget(module, *args)
    if loader == "sklearn" and path.suffix.lower() == ".skops":
        return SklearnTarget(_skops(path), *args)
    if loader == "sklearn":
        import joblib

        return SklearnTarget(joblib.load(path), *args)
    raise InputError(f"{path}: PyTorch weights with --factory need the gateway's loaders "
                     "(pip install 'bastion-mlsec[gateway]')")


def _looks_like_probabilities(target: TorchTarget, sample: NDArray[np.float32]) -> bool:
    """Whether the module's outputs are already probabilities (a softmax layer at the end)."""
    import torch

    with torch.no_grad():
        out = target.module(torch.from_numpy(np.ascontiguousarray(sample))).numpy()
    return bool(out.min() >= 0 and np.allclose(out.sum(1), 1.0, atol=1e-3))


def _onnx(path: Path, name: str, input_shape: tuple[int, ...], n_classes: int,
          clip_values: tuple[float, float]) -> Target:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: NDArray[np.float32]) -> Any:
        results = session.run(None, {input_name: x})
        for value in results:  # skl2onnx: labels first, then scores
            array = np.asarray(value)
            if array.ndim == 2 and array.shape[1] == n_classes and array.dtype.kind == "f":
                return array
        return np.asarray(results[0])

    return PredictorTarget(run, name, input_shape, n_classes, clip_values,
                           family="ONNX Runtime")


def _skops(path: Path) -> Any:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=str(path))
    unsafe = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if unsafe:
        raise InputError(f"{path}: the skops file names types outside scikit-learn, NumPy and "
                         f"SciPy ({', '.join(unsafe[:5])}); refusing to load it")
    return sio.load(str(path), trusted=untrusted)
