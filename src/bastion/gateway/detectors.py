"""Live attack detection in the gateway: model extraction and adversarial inputs.

Two detectors watch a model's traffic, each ``off``, ``alert`` (the request is answered, its
audit entry says ``alert:<detector>`` and ``detections_total`` counts it) or ``block`` (403
``blocked_<detector>``), set per model in ``[gateway.detectors]``
(:class:`~bastion.gateway.config.DetectorSettings`).

**Extraction** (per principal, per model), two signals:

* PRADA (Juuti et al., "PRADA: Protecting against DNN Model Stealing Attacks", EuroS&P 2019).
  For each query, the minimum L2 distance to the principal's earlier queries of the same
  predicted class; the query joins that class's growing set when the distance is above the
  class's threshold (mean − standard deviation of the distances that grew the set). Benign
  queries are spread naturally and their distances look normally distributed; the synthetic
  queries of an extraction attack (small steps from earlier queries, boundary probing) skew
  the distribution. A Shapiro–Wilk statistic W of the most recent ``window`` distances below
  ``delta`` flags the principal (the paper tests all of them; a window notices a change of
  behaviour sooner, and bounds the work). Exact repeats (distance 0) carry no information and are
  skipped. Limitation (the paper's, and measured here): attackers that query *natural* data
  look like benign users to PRADA; the volume signal is what catches bulk harvesting.
* Query volume: queries in the last ``volume-window`` seconds (sliding) against
  ``volume-factor`` times the principal's usual rate (a moving average over its earlier
  active windows), never less than ``volume-floor``. A principal with fewer than
  :data:`VOLUME_HISTORY` active windows behind it is held to the floor.

A flagged principal stays flagged on that model — every later request alerts, or is refused
in block mode — until an admin clears it (``POST /v1/models/{name}/detectors/reset?principal=``).
Flags live in the process, or in Redis when the gateway has a ``redis-url``, so that every
worker and replica refuses the principal and one reset clears it everywhere. The per-query
state (class sets, distances, counters) stays in each process: with several workers each sees
its share of a principal's traffic.

Memory is bounded: at most ``max-samples`` stored inputs and ``window`` distances per
principal, inputs larger than :data:`MAX_DIM` values subsampled on a fixed grid of
:data:`MAX_DIM` coordinates (L2 distances scale evenly in expectation), at most
``max-principals`` principals per model and ``memory-mib`` for all of them, the least
recently active forgotten first.

**Adversarial inputs**: feature squeezing (Xu, Evans and Qi, "Feature Squeezing: Detecting
Adversarial Examples in Deep Neural Networks", NDSS 2018). The model also answers squeezed
copies of each input — bit-depth reduction to ``squeeze-bits`` bits over the schema's declared
``[min, max]``, and a 2×2 median filter when the input is image-shaped (2-D, or 3-D with 1, 3
or 4 channels first or last) and ``median-smoothing`` is on; the score is the largest L1
distance between the probability vectors of the input and of a squeezed copy. Adversarial
perturbations are fragile: squeezing often moves the answer, which it rarely does for natural
inputs. A score above ``threshold`` flags the input. In block mode the whole request is
refused, so with a false-alarm rate f per input a batch of n is refused with probability
1 - (1 - f)^n: block suits clients that send an input per request; batch clients want alert.
The threshold depends on the model: :func:`calibrate` gives the score quantile of clean inputs
at a chosen false-alarm rate. Feature squeezing is strongest against small, just-sufficient
perturbations and weak against high-confidence ones (a large-budget PGD moves the input far
past the boundary, where squeezing no longer moves it back). It needs a declared value range
and a model that answers probabilities; a model without them is not screened (logged once).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bastion.findings import clip
from bastion.gateway.errors import GatewayError

if TYPE_CHECKING:
    import redis

    from bastion.gateway.config import DetectorSettings, GatewayConfig
    from bastion.gateway.loaders import Prediction, Predictor
    from bastion.gateway.schema import InputSchema

log = logging.getLogger("bastion.gateway.detectors")

#: Values per input the extraction monitor keeps (larger inputs are subsampled on a grid).
MAX_DIM = 1024
#: Distinct predicted classes tracked per principal; the rest share one set.
MAX_CLASSES = 1000
#: Flags kept in memory (flagged principals are few; this only bounds a pathological case).
MAX_FLAGS = 100_000
#: Moving-average weight of the latest window in a principal's usual rate.
VOLUME_ALPHA = 0.3
#: The volume window slides in steps of a tenth of its length.
VOLUME_SLOTS = 10
#: Active window periods before a principal's usual rate counts (until then, the floor): a
#: burst cannot become its own baseline, nor a quick ramp-up raise the limit tenfold.
VOLUME_HISTORY = 5
_OTHER_CLASS = "\0other"

Array = np.ndarray[Any, Any]


class DetectorUnavailable(GatewayError):
    """The flag store (Redis) failed: requests to a watched model cannot be screened."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One detector's finding on one request."""

    detector: str  # "extraction" | "adversarial"
    action: str  # "alert" | "block"
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the detectors say about one request."""

    detections: tuple[Detection, ...] = ()

    @property
    def blocked(self) -> Detection | None:
        """The detection that refuses the request (adversarial first), if any."""
        blocks = [d for d in self.detections if d.action == "block"]
        blocks.sort(key=lambda d: d.detector != "adversarial")
        return blocks[0] if blocks else None

    @property
    def alert(self) -> str:
        """``alert:extraction``, ``alert:adversarial`` or both (comma-separated), else ``""``."""
        return ",".join(f"alert:{d.detector}" for d in self.detections if d.action == "alert")

    @property
    def summary(self) -> str:
        """One line for the audit entry's output summary."""
        return "; ".join(f"{d.action}:{d.detector} ({d.message})" for d in self.detections)


# -- flags ---------------------------------------------------------------------------------------


class FlagStore(Protocol):
    def get(self, model: str, principal: str) -> str | None: ...

    def set(self, model: str, principal: str, why: str) -> None: ...

    def clear(self, model: str, principal: str) -> bool: ...


class MemoryFlags:
    """Flags in this process."""

    def __init__(self, limit: int = MAX_FLAGS) -> None:
        self._flags: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, model: str, principal: str) -> str | None:
        return self._flags.get((model, principal))

    def set(self, model: str, principal: str, why: str) -> None:
        with self._lock:
            self._flags[(model, principal)] = why
            while len(self._flags) > self._limit:
                self._flags.popitem(last=False)

    def clear(self, model: str, principal: str) -> bool:
        with self._lock:
            return self._flags.pop((model, principal), None) is not None


class RedisFlags:
    """Flags shared by every worker and replica using the same Redis and prefix."""

    def __init__(self, url: str, prefix: str = "bastion", *, timeout: float = 2.0,
                 client: redis.Redis | None = None) -> None:
        import redis as redis_lib

        self.prefix = prefix.rstrip(":") + ":flag:"
        self._client: redis.Redis = client or redis_lib.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            health_check_interval=30)
        self._errors: tuple[type[BaseException], ...] = (redis_lib.RedisError,)

    def key(self, model: str, principal: str) -> str:
        text = f"{model}\n{principal}".encode("utf-8", "surrogatepass")
        return self.prefix + hashlib.sha256(text).hexdigest()

    def get(self, model: str, principal: str) -> str | None:
        try:
            value = self._client.get(self.key(model, principal))
        except self._errors as exc:
            raise DetectorUnavailable(f"the detector flag store (Redis) failed: {exc}") from None
        if value is None:
            return None
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def set(self, model: str, principal: str, why: str) -> None:
        try:
            self._client.set(self.key(model, principal), why.encode("utf-8", "replace"))
        except self._errors as exc:
            raise DetectorUnavailable(f"the detector flag store (Redis) failed: {exc}") from None

    def clear(self, model: str, principal: str) -> bool:
        try:
            return bool(self._client.delete(self.key(model, principal)))
        except self._errors as exc:
            raise DetectorUnavailable(f"the detector flag store (Redis) failed: {exc}") from None

    def close(self) -> None:
        self._client.close()


# -- extraction ----------------------------------------------------------------------------------


class _ClassSet:
    """PRADA's growing set G_c of one predicted class, with its threshold T_c."""

    __slots__ = ("count", "data", "sq_sum", "sum", "threshold", "used")

    def __init__(self, dim: int) -> None:
        self.data: Array = np.empty((1, dim), dtype=np.float32)
        self.used = 0
        self.count = 0  # distances that grew the set (D_Gc)
        self.sum = 0.0
        self.sq_sum = 0.0
        self.threshold = 0.0

    def nearest(self, x: Array) -> float:
        diff = self.data[:self.used] - x
        return float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))

    def add(self, x: Array, distance: float | None) -> None:
        if self.used == len(self.data):
            grown = np.empty((len(self.data) * 2, self.data.shape[1]), dtype=np.float32)
            grown[:self.used] = self.data[:self.used]
            self.data = grown
        self.data[self.used] = x
        self.used += 1
        if distance is not None:
            self.count += 1
            self.sum += distance
            self.sq_sum += distance * distance
            mean = self.sum / self.count
            std = math.sqrt(max(0.0, self.sq_sum / self.count - mean * mean))
            self.threshold = max(self.threshold, mean - std)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class _PrincipalState:
    """One principal's traffic on one model."""

    __slots__ = ("baseline", "classes", "distances", "history", "lock", "period",
                 "period_count", "queries", "slots", "stored")

    def __init__(self, window: int) -> None:
        self.lock = threading.Lock()
        self.classes: dict[Hashable, _ClassSet] = {}
        self.distances: deque[float] = deque(maxlen=window)
        self.stored = 0
        self.queries = 0
        #: Queries per tenth of the volume window (slot index, count): a sliding window.
        self.slots: deque[list[int]] = deque(maxlen=VOLUME_SLOTS)
        #: The usual rate: a moving average of the queries per (fixed) window period.
        self.period = -1
        self.period_count = 0
        self.baseline: float | None = None
        self.history = 0  # active periods seen

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.classes.values()) + 8 * len(self.distances) + 512


def _class_key(label: Any) -> Hashable:
    if isinstance(label, str | int | bool):
        return label
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return None  # a regression value: one shared set


def _flatten(x: Array) -> Array:
    """Inputs as float32 rows of at most :data:`MAX_DIM` values (a fixed grid beyond)."""
    flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    if flat.shape[1] > MAX_DIM:
        grid = np.linspace(0, flat.shape[1] - 1, MAX_DIM).round().astype(np.int64)
        flat = flat[:, grid]
    return np.ascontiguousarray(flat)


#: Royston's (1992, 1995: algorithm AS R94) polynomial corrections of the first two weights.
_C1 = (0.0, 0.221157, -0.147981, -2.07119, 4.434685, -2.706056)
_C2 = (0.0, 0.042981, -0.293762, -1.752461, 5.682633, -3.582633)


@functools.lru_cache(maxsize=16)
def _shapiro_weights(n: int) -> Array:
    """The Shapiro-Wilk weights a_1..a_{n/2} for a sample of ``n`` (Royston's approximation,
    as in R's ``swilk.c`` and SciPy)."""
    half = n // 2
    inv = NormalDist().inv_cdf
    m = np.array([-inv((i + 1 - 0.375) / (n + 0.25)) for i in range(half)])  # > 0
    summ2 = 2.0 * float((m * m).sum())
    ssumm2 = math.sqrt(summ2)
    rsn = 1.0 / math.sqrt(n)
    a = np.empty(half)
    a1 = m[0] / ssumm2 + sum(c * rsn ** k for k, c in enumerate(_C1))
    if n > 5:
        a2 = m[1] / ssumm2 + sum(c * rsn ** k for k, c in enumerate(_C2))
        fac = math.sqrt((summ2 - 2 * m[0] ** 2 - 2 * m[1] ** 2) / (1 - 2 * a1 ** 2 - 2 * a2 ** 2))
        a[1] = a2
        a[2:] = m[2:] / fac
    else:
        fac = math.sqrt((summ2 - 2 * m[0] ** 2) / (1 - 2 * a1 ** 2))
        a[1:] = m[1:] / fac
    a[0] = a1
    return a


def shapiro_w(distances: Sequence[float] | Array) -> float:
    """The Shapiro-Wilk statistic W of the distances (1: perfectly normal), for 6 to 5,000
    values (the statistic only, no p-value: PRADA compares W with its ``delta``). Identical
    distances (a fixed-step scan) are as far from a natural spread as it gets: 0."""
    values = np.sort(np.asarray(distances, dtype=np.float64))
    n = len(values)
    if n < 6:
        return 1.0  # too few to judge (the monitor needs at least 20)
    if n > 5000:
        raise ValueError("the Shapiro-Wilk approximation holds for at most 5,000 values")
    centred = values - values.mean()
    ss = float((centred * centred).sum())
    if not ss > 1e-24 * max(1.0, float(values[-1] ** 2)) * n:
        return 0.0
    a = _shapiro_weights(n)
    half = len(a)
    b = float((a * (values[::-1][:half] - values[:half])).sum())
    return min(1.0, b * b / ss)


class ExtractionMonitor:
    """PRADA and query volume for every principal of one model."""

    def __init__(self, settings: DetectorSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._states: OrderedDict[str, _PrincipalState] = OrderedDict()
        self._lock = threading.Lock()
        self._budget = settings.memory_mib << 20
        self._bytes = 0  # the states' memory, as last accounted

    def _state(self, principal: str) -> _PrincipalState:
        with self._lock:
            state = self._states.get(principal)
            if state is None:
                state = self._states[principal] = _PrincipalState(self.settings.window)
                self._bytes += state.nbytes
                self._evict(keep=principal)
            else:
                self._states.move_to_end(principal)
            return state

    def _account(self, principal: str, state: _PrincipalState, grown: int) -> None:
        """Add a state's growth to the total (unless it was forgotten meanwhile), then keep
        to the memory budget."""
        if not grown:
            return
        with self._lock:
            if self._states.get(principal) is state:
                self._bytes += grown
                self._evict(keep=principal)

    def _evict(self, keep: str) -> None:
        """Forget the least recently active principals beyond the count or memory bounds
        (``keep``, the one being served, stays)."""
        while len(self._states) > self.settings.max_principals:
            _, gone = self._states.popitem(last=False)
            self._bytes -= gone.nbytes
        while self._bytes > self._budget and len(self._states) > 1:
            name, state = next(iter(self._states.items()))
            if name == keep:
                self._states.move_to_end(name)
                continue
            self._bytes -= state.nbytes
            del self._states[name]

    def forget(self, principal: str) -> None:
        with self._lock:
            gone = self._states.pop(principal, None)
            if gone is not None:
                self._bytes -= gone.nbytes

    @property
    def nbytes(self) -> int:
        """Memory held for all principals (as last accounted)."""
        return self._bytes

    @property
    def principals(self) -> int:
        return len(self._states)

    def observe(self, principal: str, x: Array, labels: Sequence[Any]) -> str | None:
        """Record one request's inputs and predicted labels; the reason to flag the principal,
        or ``None``."""
        settings = self.settings
        state = self._state(principal)
        rows = _flatten(x)
        with state.lock:
            before = state.nbytes
            state.queries += len(rows)
            why = self._volume(state, len(rows))
            for row, label in zip(rows, labels, strict=False):
                self._prada_add(state, row, _class_key(label))
            if why is None and len(state.distances) >= settings.min_samples:
                w = shapiro_w(state.distances)
                if w < settings.delta:
                    why = (f"PRADA: Shapiro-Wilk W={w:.3f} < delta {settings.delta:g} over the "
                           f"last {len(state.distances)} query distances")
            if why is not None:
                why += f", after {state.queries} queries"
            grown = state.nbytes - before
        self._account(principal, state, grown)
        return why

    def _prada_add(self, state: _PrincipalState, row: Array, key: Hashable) -> None:
        classes = state.classes
        group = classes.get(key)
        if group is None:
            if len(classes) >= MAX_CLASSES:
                key = _OTHER_CLASS
                group = classes.get(key)
            if group is None:
                group = classes[key] = _ClassSet(len(row))
                group.add(row, None)
                state.stored += 1
                return
        distance = group.nearest(row)
        if distance <= 0.0:
            return  # an exact repeat: nothing new
        state.distances.append(distance)
        if distance > group.threshold and state.stored < self.settings.max_samples:
            group.add(row, distance)
            state.stored += 1

    def _volume(self, state: _PrincipalState, n: int) -> str | None:
        """Queries in the last ``volume-window`` seconds (sliding, in tenths) against the
        limit; the usual rate is learnt per fixed window period from the periods in which
        the principal was active (idle periods do not drag it down)."""
        settings = self.settings
        if settings.volume_floor <= 0:
            return None
        now = self.clock()
        period = int(now // settings.volume_window)
        if period != state.period:
            if state.period_count:
                state.baseline = (float(state.period_count) if state.baseline is None else
                                  (1 - VOLUME_ALPHA) * state.baseline
                                  + VOLUME_ALPHA * state.period_count)
                state.history += 1
            state.period, state.period_count = period, 0
        state.period_count += n
        slot = int(now // (settings.volume_window / VOLUME_SLOTS))
        slots = state.slots
        while slots and slots[0][0] <= slot - VOLUME_SLOTS:
            slots.popleft()
        if slots and slots[-1][0] == slot:
            slots[-1][1] += n
        else:
            slots.append([slot, n])
        count = sum(c for _, c in slots)
        limit = float(settings.volume_floor)
        learnt = state.baseline is not None and state.history >= VOLUME_HISTORY
        if learnt:
            limit = max(limit, settings.volume_factor * (state.baseline or 0.0))
        if count > limit:
            usual = (f"usually {state.baseline:.0f}" if learnt
                     else "too little history")
            return (f"query volume: {count} queries in {settings.volume_window:g} s, over "
                    f"the limit of {limit:.0f} ({usual})")
        return None


# -- adversarial inputs --------------------------------------------------------------------------

Squeezer = Callable[[Array], Array]


def bit_depth(bits: int, low: float, high: float, dtype: Any) -> Squeezer:
    """Reduce each value to ``2**bits`` evenly spaced levels over ``[low, high]``."""
    levels = (1 << bits) - 1
    span = high - low
    integer = np.dtype(dtype).kind in "iu"

    def squeeze(x: Array) -> Array:
        unit = (np.asarray(x, dtype=np.float64) - low) / span
        out = np.round(np.clip(unit, 0.0, 1.0) * levels) / levels * span + low
        if integer:
            out = np.round(out)
        return out.astype(x.dtype, copy=False)

    return squeeze


def median_2x2(axes: tuple[int, int]) -> Squeezer:
    """A 2×2 median filter over two axes (the window reaches right and down; edges repeat):
    the median of four values is the mean of the middle two."""
    a, b = axes

    def squeeze(x: Array) -> Array:
        pad = [(0, 0)] * x.ndim
        pad[a] = pad[b] = (0, 1)
        p = np.pad(x.astype(np.float64, copy=False), pad, mode="edge")
        n_a, n_b = x.shape[a], x.shape[b]

        def view(da: int, db: int) -> Array:
            index: list[slice] = [slice(None)] * x.ndim
            index[a] = slice(da, da + n_a)
            index[b] = slice(db, db + n_b)
            return p[tuple(index)]

        quad = np.stack([view(0, 0), view(1, 0), view(0, 1), view(1, 1)])
        middle: Array = (quad.sum(0) - quad.max(0) - quad.min(0)) / 2.0
        if np.dtype(x.dtype).kind in "iu":
            middle = np.round(middle)
        return middle.astype(x.dtype, copy=False)

    return squeeze


def image_axes(shape: Sequence[int | None]) -> tuple[int, int] | None:
    """The two spatial axes of a batch of images with this per-input shape, or ``None``."""
    dims = list(shape)
    if len(dims) == 2:
        return (1, 2)
    if len(dims) == 3:
        if dims[0] in (1, 3, 4):
            return (2, 3)  # channels first
        if dims[-1] in (1, 3, 4):
            return (1, 2)  # channels last
    return None


def squeezers(settings: DetectorSettings, schema: InputSchema) -> tuple[
        list[tuple[str, Squeezer]], str]:
    """The squeezers that apply to this schema, and why others do not (``""`` if none)."""
    if schema.min is None or schema.max is None or schema.max <= schema.min:
        return [], "the input schema declares no value range (min and max)"
    if schema.dtype == "bool":
        return [], "the inputs are booleans"
    out: list[tuple[str, Squeezer]] = []
    skipped = ""
    if settings.squeeze_bits:
        out.append((f"bits-{settings.squeeze_bits}",
                    bit_depth(settings.squeeze_bits, schema.min, schema.max, schema.dtype)))
    if settings.median_smoothing:
        axes = image_axes(schema.shape[1:])
        if axes is None:
            skipped = f"median smoothing: inputs of shape {schema.shape[1:]} are not images"
        else:
            out.append(("median-2x2", median_2x2(axes)))
    return out, skipped


def squeeze_scores(predict: Callable[[Array], Prediction], x: Array, scores: Array,
                   squeeze: Sequence[tuple[str, Squeezer]]) -> Array:
    """Feature squeezing's score of each input: the largest L1 distance between the model's
    probabilities on the input (``scores``) and on each squeezed copy. One model call per
    squeezer (measured: stacking the copies into one call saves nothing on a small CNN, whose
    batch of 2 costs twice a batch of 1, and doubles the memory of a large batch)."""
    base = np.asarray(scores, dtype=np.float64)
    best = np.zeros(len(x))
    for _, fn in squeeze:
        answered = predict(fn(x)).scores
        if answered is None:
            raise ValueError("the model answered no probabilities for the squeezed inputs")
        distance = np.abs(base - np.asarray(answered, dtype=np.float64)).sum(axis=1)
        best = np.maximum(best, distance)
    return best


def calibrate(predict: Callable[[Array], Prediction], clean: Array, settings: DetectorSettings,
              schema: InputSchema, *, false_alarms: float = 0.05, batch: int = 256) -> float:
    """The threshold at which ``false_alarms`` of these clean inputs would be flagged (Xu et
    al. choose it so on legitimate examples). Give inputs the model was trained or validated
    on, not the ones the false-alarm rate is measured on."""
    squeeze, _ = squeezers(settings, schema)
    if not squeeze:
        raise ValueError("feature squeezing does not apply to this model's inputs")
    scores = []
    for start in range(0, len(clean), batch):
        part = clean[start:start + batch]
        answered = predict(part).scores
        if answered is None:
            raise ValueError("the model answers no probabilities")
        scores.append(squeeze_scores(predict, part, answered, squeeze))
    return float(np.quantile(np.concatenate(scores), 1.0 - false_alarms))


# -- per model -----------------------------------------------------------------------------------


class ModelGuard:
    """The detectors of one model (settings already merged with the ``*`` defaults)."""

    def __init__(self, name: str, settings: DetectorSettings, flags: FlagStore) -> None:
        self.name = name
        self.settings = settings
        self.flags = flags
        self.extraction = (ExtractionMonitor(settings) if settings.extraction != "off"
                           else None)
        self._squeezers: dict[str, tuple[list[tuple[str, Squeezer]], str]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def refused(self, principal: str) -> Detection | None:
        """An extraction flag that still holds against this principal (checked before the
        model runs)."""
        if self.extraction is None:
            return None
        why = self.flags.get(self.name, principal)
        if why is None or self.settings.extraction != "block":
            return None
        return Detection("extraction", "block", f"flagged earlier: {why}")

    def screen(self, principal: str, x: Array, prediction: Prediction, predictor: Predictor,
               schema: InputSchema) -> Verdict:
        """Run the detectors on one answered request."""
        found: list[Detection] = []
        settings = self.settings
        if settings.adversarial != "off":
            detection = self._adversarial(x, prediction, predictor, schema)
            if detection is not None:
                found.append(detection)
        if self.extraction is not None:
            # In block mode a flagged principal never gets here (``refused``); in alert mode
            # every request after the flag carries the alert.
            why = (self.flags.get(self.name, principal) if settings.extraction == "alert"
                   else None)
            fresh = self.extraction.observe(principal, x, prediction.labels)
            if why is None and fresh is not None:
                why = fresh
                self.flags.set(self.name, principal, clip(fresh, 300))
                log.warning("model %s: principal %s flagged for extraction (%s)", self.name,
                            clip(principal, 100), fresh)
            if why is not None:
                found.append(Detection("extraction", settings.extraction, clip(why, 300)))
        return Verdict(tuple(found))

    def _adversarial(self, x: Array, prediction: Prediction, predictor: Predictor,
                     schema: InputSchema) -> Detection | None:
        key = schema.model_dump_json()
        cached = self._squeezers.get(key)
        if cached is None:
            cached = self._squeezers[key] = squeezers(self.settings, schema)
        squeeze, skipped = cached
        problem = skipped if not squeeze else ""
        if squeeze and prediction.scores is None:
            problem, squeeze = "the model answers no probabilities", []
        if problem:
            self._warn_once(f"adversarial-input detection: {problem}")
        if not squeeze or prediction.scores is None:
            return None
        scores = squeeze_scores(predictor.predict, x, prediction.scores, squeeze)
        over = np.flatnonzero(scores > self.settings.threshold)
        if not len(over):
            return None
        shown = ", ".join(str(int(i)) for i in over[:10]) + (", ..." if len(over) > 10 else "")
        return Detection("adversarial", self.settings.adversarial,
                         f"feature squeezing: {len(over)} of {len(x)} inputs scored over "
                         f"{self.settings.threshold:g} (max {float(scores.max()):.3f}; "
                         f"inputs {shown})")

    def _warn_once(self, message: str) -> None:
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        log.warning("model %s: %s; not screened", self.name, message)


class Detectors:
    """Every model's guard, built on first use from the gateway's settings."""

    def __init__(self, config: GatewayConfig, flags: FlagStore | None = None) -> None:
        self.config = config
        if flags is None:
            flags = (RedisFlags(config.redis_url, prefix=config.redis_prefix)
                     if config.redis_url else MemoryFlags())
        self.flags = flags
        self._guards: dict[str, ModelGuard | None] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any model could have a detector on."""
        return any(s.extraction != "off" or s.adversarial != "off"
                   for s in self.config.detectors.values())

    def guard(self, model: str) -> ModelGuard | None:
        """The model's guard, or ``None`` when both its detectors are off."""
        try:
            return self._guards[model]
        except KeyError:
            pass
        with self._lock:
            if model not in self._guards:
                settings = self.config.detectors_for(model)
                on = settings.extraction != "off" or settings.adversarial != "off"
                # Only configured names or real models reach here (after authorization).
                self._guards[model] = ModelGuard(model, settings, self.flags) if on else None
            return self._guards[model]

    def reset(self, model: str, principal: str) -> bool:
        """Clear a principal's extraction flag and forget its traffic on ``model``; whether
        a flag was cleared."""
        guard = self._guards.get(model)  # never builds one: any name may be asked about
        if guard is not None and guard.extraction is not None:
            guard.extraction.forget(principal)
        return self.flags.clear(model, principal)
