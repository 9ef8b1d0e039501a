"""Attack detectors, in-process: PRADA and query volume, feature squeezing, flags, settings.

The streams are real: scikit-learn's digits as the benign traffic, a classifier trained on
them to predict the classes PRADA groups queries by, the synthetic queries of PRADA's own
T-RND attack (random steps from earlier queries), a fixed-step scan, and PGD examples made
with Bastion's own attack against a small CNN. The Shapiro-Wilk statistic is checked against
SciPy's. Flags are kept in memory and in the real Redis on 127.0.0.1.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.gateway.config import ConfigError, DetectorSettings, load_config
from bastion.gateway.detectors import (
    MAX_DIM,
    Detectors,
    ExtractionMonitor,
    MemoryFlags,
    ModelGuard,
    RedisFlags,
    bit_depth,
    calibrate,
    image_axes,
    median_2x2,
    shapiro_w,
    squeeze_scores,
    squeezers,
)
from bastion.gateway.loaders import Prediction
from bastion.gateway.schema import InputSchema

REDIS_URL = "redis://127.0.0.1:6379/0"
IMAGES = InputSchema(shape=[None, 1, 8, 8], dtype="float32", min=0, max=1, max_batch=64)
EXTRACTION = DetectorSettings(extraction="block", volume_floor=0)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8), bunch.target


@pytest.fixture(scope="module")
def classifier(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    import warnings

    from sklearn.linear_model import LogisticRegression

    x, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(max_iter=300).fit(x.reshape(len(x), -1), y)


def labels_of(model: Any, x: np.ndarray) -> list[int]:
    return [int(v) for v in model.predict(x.reshape(len(x), -1))]


def feed(monitor: ExtractionMonitor, model: Any, stream: np.ndarray, batch: int = 16,
         who: str = "p") -> tuple[str | None, int]:
    """Send a stream in batches; the first flag and how many queries it took."""
    for start in range(0, len(stream), batch):
        x = stream[start:start + batch]
        why = monitor.observe(who, x, labels_of(model, x))
        if why is not None:
            return why, start + len(x)
    return None, len(stream)


# -- Shapiro-Wilk ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [6, 11, 20, 100, 300, 1000, 5000])
def test_shapiro_w_is_scipys(n: int) -> None:
    from scipy.stats import shapiro

    rng = np.random.default_rng(n)
    for sample in (rng.normal(size=n), rng.uniform(size=n), rng.exponential(size=n),
                   rng.lognormal(size=n)):
        # SciPy computes parts in single precision
        assert shapiro_w(sample) == pytest.approx(shapiro(sample).statistic, abs=1e-6)


def test_shapiro_w_edges() -> None:
    assert shapiro_w([1.0, 2.0]) == 1.0  # too few to judge
    assert shapiro_w(np.full(50, 0.25)) == 0.0  # a fixed-step scan: no natural spread
    with pytest.raises(ValueError, match="5,000"):
        shapiro_w(np.arange(5001.0))


# -- settings --------------------------------------------------------------------------------------


def test_detectors_are_off_by_default_and_merge_over_the_star() -> None:
    config = load_config({}, environ={})
    assert config.detectors_for("any").extraction == "off"
    assert config.detectors_for("any").adversarial == "off"
    assert not Detectors(config).enabled
    config = load_config({"detectors": {
        "*": {"extraction": "alert", "delta": 0.8, "volume-floor": 0},
        "digits": {"adversarial": "block", "squeeze-bits": 2, "extraction": "block"}}},
        environ={})
    digits = config.detectors_for("digits")
    assert (digits.extraction, digits.delta, digits.volume_floor) == ("block", 0.8, 0)
    assert (digits.adversarial, digits.squeeze_bits) == ("block", 2)
    other = config.detectors_for("other")
    assert (other.extraction, other.adversarial, other.delta) == ("alert", "off", 0.8)
    # `bastion serve` hands settings to its workers as JSON: the meaning survives the trip
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert load_config(dumped, environ={}) == config
    # and through the environment
    env = load_config({}, environ={"BASTION_GATEWAY_DETECTORS":
                                   '{"m": {"extraction": "alert", "volume-floor": 5}}'})
    assert env.detectors_for("m").volume_floor == 5


@pytest.mark.parametrize(("table", "problem"), [
    ({"m": {"extraction": "on"}}, "detectors.m.extraction"),
    ({"m": {"adversarial": "alert", "squeeze-bits": 0}}, "needs squeeze-bits or median"),
    ({"m": {"delta": 1.5}}, "detectors.m.delta"),
    ({"m": {"min-samples": 500, "window": 100}}, "min-samples is above window"),
    ({"m": {"threshold": 0}}, "detectors.m.threshold"),
    ({"m": {"unknown-key": 1}}, "detectors.m.unknown-key"),
])
def test_bad_detector_settings_are_refused(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config({"detectors": table}, environ={})


# -- extraction: PRADA -----------------------------------------------------------------------------


def test_benign_digits_are_not_flagged(digits: tuple[np.ndarray, np.ndarray],
                                       classifier: Any) -> None:
    x, _ = digits
    for seed in range(3):
        stream = x[np.random.default_rng(seed).permutation(len(x))]
        why, _ = feed(ExtractionMonitor(EXTRACTION), classifier, stream)
        assert why is None, (seed, why)


def test_t_rnd_synthetic_queries_are_flagged(digits: tuple[np.ndarray, np.ndarray],
                                             classifier: Any) -> None:
    """PRADA's T-RND attacker: a few natural seeds, then random signed steps of 0.1 from
    earlier queries (Papernot-style augmentation without gradients)."""
    x, _ = digits
    rng = np.random.default_rng(0)
    queries = [*x[rng.choice(len(x), 20, replace=False)]]
    while len(queries) < 1500:
        base = queries[int(rng.integers(len(queries)))]
        step = 0.1 * np.sign(rng.standard_normal(base.shape)).astype(np.float32)
        queries.append(np.clip(base + step, 0, 1))
    why, after = feed(ExtractionMonitor(EXTRACTION), classifier, np.stack(queries))
    assert why is not None
    assert why.startswith("PRADA: Shapiro-Wilk W=")
    assert after <= 400, why


def test_a_fixed_step_scan_is_flagged(classifier: Any) -> None:
    """Brightening one image step by step: the first test of the distances flags it."""
    base = np.zeros((1, 8, 8), dtype=np.float32)
    scan = np.stack([np.clip(base + 0.001 * i, 0, 1) for i in range(300)])
    why, after = feed(ExtractionMonitor(EXTRACTION), classifier, scan, batch=1)
    assert why is not None
    assert why.startswith("PRADA")
    assert after <= EXTRACTION.min_samples + 2


def test_repeats_carry_no_information(classifier: Any,
                                      digits: tuple[np.ndarray, np.ndarray]) -> None:
    monitor = ExtractionMonitor(EXTRACTION)
    same = np.repeat(digits[0][:1], 500, axis=0)
    assert feed(monitor, classifier, same)[0] is None
    assert len(monitor._states["p"].distances) == 0


def test_principals_are_watched_apart(digits: tuple[np.ndarray, np.ndarray],
                                      classifier: Any) -> None:
    """Two principals sharing the steps of one scan: each sees only its own queries."""
    monitor = ExtractionMonitor(EXTRACTION)
    x, _ = digits
    for i in range(0, 600, 2):
        a, b = x[i:i + 1], x[i + 1:i + 2]
        assert monitor.observe("a", a, labels_of(classifier, a)) is None
        assert monitor.observe("b", b, labels_of(classifier, b)) is None
    assert monitor._states["a"].queries == monitor._states["b"].queries == 300


# -- extraction: volume ----------------------------------------------------------------------------


def test_volume_floor_for_a_principal_without_history(classifier: Any,
                                                      digits: tuple[np.ndarray, np.ndarray]
                                                      ) -> None:
    clock = Clock()
    settings = DetectorSettings(extraction="block", delta=0.01, volume_floor=300,
                                volume_window=60)
    monitor = ExtractionMonitor(settings, clock=clock)
    x = digits[0][:400]
    why, after = feed(monitor, classifier, x, batch=50)
    assert why is not None
    assert why.startswith("query volume: 350 queries in 60 s, over the limit of 300 "
                          "(too little history)")
    assert after == 350


def test_volume_window_slides_across_period_boundaries(classifier: Any, digits: tuple[
        np.ndarray, np.ndarray]) -> None:
    """A burst split by a fixed-window boundary is still one burst."""
    clock = Clock(now=59.0 * 1000)  # a period boundary at 59040 s (60 s periods)
    settings = DetectorSettings(extraction="block", delta=0.01, volume_floor=300,
                                volume_window=60)
    monitor = ExtractionMonitor(settings, clock=clock)
    x = digits[0]
    assert monitor.observe("p", x[:200], labels_of(classifier, x[:200])) is None
    clock.now += 45  # past the boundary, within 60 s of the first batch
    why = monitor.observe("p", x[200:400], labels_of(classifier, x[200:400]))
    assert why is not None
    assert "400 queries in 60 s" in why
    clock.now += 61  # the first burst slid out of the window
    assert monitor.observe("q", x[:10], labels_of(classifier, x[:10])) is None


def test_volume_learns_the_usual_rate(classifier: Any,
                                      digits: tuple[np.ndarray, np.ndarray]) -> None:
    clock = Clock(now=0.0)
    settings = DetectorSettings(extraction="block", delta=0.01, volume_floor=100,
                                volume_window=60, volume_factor=3)
    monitor = ExtractionMonitor(settings, clock=clock)
    x = digits[0]
    for _ in range(5):  # five busy minutes of 90 queries: usual, under the floor
        assert monitor.observe("p", x[:90], labels_of(classifier, x[:90])) is None
        clock.now += 60
    # 3 x 90 = 270 is now the limit: 250 is fine for this principal...
    assert monitor.observe("p", x[:250], labels_of(classifier, x[:250])) is None
    clock.now += 60
    # ...but a tenfold burst is not
    burst = np.concatenate([x, x])[:900]
    why = monitor.observe("p", burst, labels_of(classifier, burst))
    assert why is not None
    assert "usually" in why


# -- extraction: bounds and threads ----------------------------------------------------------------


def test_memory_and_principals_are_bounded(classifier: Any,
                                           digits: tuple[np.ndarray, np.ndarray]) -> None:
    x = digits[0]
    settings = DetectorSettings(extraction="alert", volume_floor=0, max_samples=50,
                                max_principals=5)
    monitor = ExtractionMonitor(settings)
    for i in range(8):
        monitor.observe(f"p{i}", x[:300], labels_of(classifier, x[:300]))
    assert monitor.principals == 5
    assert "p0" not in monitor._states  # the least recently active went first
    assert all(s.stored <= 50 for s in monitor._states.values())
    assert all(len(s.distances) <= settings.window for s in monitor._states.values())
    # a byte budget: big inputs are subsampled to MAX_DIM values, and old principals go
    big = np.random.default_rng(0).random((100, 3, 64, 64), dtype=np.float32)
    tight = ExtractionMonitor(DetectorSettings(extraction="alert", volume_floor=0,
                                               memory_mib=1, max_samples=1000))
    for i in range(20):
        for start in range(0, 100, 10):  # each input its own class: every one is kept
            tight.observe(f"p{i}", big[start:start + 10], list(range(start, start + 10)))
    state = next(iter(tight._states.values()))
    assert all(c.data.shape[1] == MAX_DIM for c in state.classes.values())
    assert state.stored == 100
    assert tight.nbytes == sum(s.nbytes for s in tight._states.values()) <= 1 << 20
    assert 1 < tight.principals < 5


def test_concurrent_requests_of_one_principal(classifier: Any,
                                              digits: tuple[np.ndarray, np.ndarray]) -> None:
    monitor = ExtractionMonitor(DetectorSettings(extraction="alert", volume_floor=0))
    x = digits[0][:800]
    labels = labels_of(classifier, x)
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        try:
            for start in range(part * 8, len(x), 64):
                monitor.observe("p", x[start:start + 8], labels[start:start + 8])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert monitor._states["p"].queries == 800


# -- feature squeezing -----------------------------------------------------------------------------


def test_bit_depth_reduction() -> None:
    x = np.array([[0.0, 0.2, 0.49, 0.51, 1.0]], dtype=np.float32)
    assert bit_depth(1, 0, 1, "float32")(x).tolist() == [[0, 0, 0, 1, 1]]
    assert bit_depth(2, 0, 1, "float32")(x)[0].tolist() == pytest.approx(
        [0, 1 / 3, 1 / 3, 2 / 3, 1])
    pixels = np.array([[0, 17, 100, 200, 255]], dtype=np.uint8)
    squeezed = bit_depth(3, 0, 255, "uint8")(pixels)
    assert squeezed.dtype == np.uint8
    assert squeezed.tolist() == [[0, 0, 109, 182, 255]]  # 7 levels: 255 * k / 7, rounded
    assert bit_depth(2, -16, 16, "float64")(np.array([[-16.0, -1.0, 16.0]]))[0].tolist() == \
        pytest.approx([-16, -16 / 3, 16])


def test_median_2x2_is_the_median_of_each_window() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 5, 7)).astype(np.float32)
    got = median_2x2((2, 3))(x)
    padded = np.pad(x, [(0, 0), (0, 0), (0, 1), (0, 1)], mode="edge")
    want = np.empty_like(x)
    for i in range(5):
        for j in range(7):
            want[:, :, i, j] = np.median(padded[:, :, i:i + 2, j:j + 2].reshape(3, 2, 4), -1)
    assert np.allclose(got, want)
    channels_last = median_2x2((1, 2))(np.moveaxis(x, 1, -1))
    assert np.allclose(np.moveaxis(channels_last, -1, 1), want)


def test_which_inputs_are_images() -> None:
    assert image_axes([28, 28]) == (1, 2)
    assert image_axes([3, 32, 32]) == (2, 3)
    assert image_axes([32, 32, 3]) == (1, 2)
    assert image_axes([64]) is None
    assert image_axes([10, 20, 30]) is None
    settings = DetectorSettings(adversarial="alert", squeeze_bits=3, median_smoothing=True)
    names = [n for n, _ in squeezers(settings, IMAGES)[0]]
    assert names == ["bits-3", "median-2x2"]
    flat = InputSchema(shape=[None, 64], min=0, max=16)
    squeeze, skipped = squeezers(settings, flat)
    assert [n for n, _ in squeeze] == ["bits-3"]
    assert "not images" in skipped
    assert squeezers(settings, InputSchema(shape=[None, 4]))[0] == []  # no range: no squeeze


@pytest.fixture(scope="module")
def cnn(digits: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[Any, Path]:
    """A small CNN on half the digits, served by the gateway's own torchscript loader."""
    torch = pytest.importorskip("torch")
    from bastion.assess.demo import train_cnn
    from bastion.gateway.loaders import load_predictor

    x, y = digits
    torch.set_num_threads(1)
    module = train_cnn(x[::2], y[::2].astype(np.int64), 0, epochs=15)
    path = tmp_path_factory.mktemp("cnn") / "digits.pt"
    torch.jit.trace(module, torch.zeros(1, 1, 8, 8)).save(str(path))
    return load_predictor("torchscript", path, input_schema=IMAGES), path


@pytest.mark.torch
def test_feature_squeezing_separates_pgd_from_clean(cnn: tuple[Any, Path], digits: tuple[
        np.ndarray, np.ndarray]) -> None:
    from bastion.assess.robustness import torch_pgd
    from bastion.assess.targets import TorchTarget

    predictor, _ = cnn
    x, y = digits
    train, test = x[::2], x[1::2][:300]
    settings = DetectorSettings(adversarial="block", squeeze_bits=2)
    threshold = calibrate(predictor.predict, train, settings, IMAGES, false_alarms=0.05)
    assert 0 < threshold < 2
    target = TorchTarget(predictor.module, "cnn", (1, 8, 8), 10, (0.0, 1.0))
    adv = torch_pgd(target, test, y[1::2][:300].astype(np.int64), 0.1, 0.0125, 20)
    flipped = np.array(predictor.predict(adv).labels) != np.array(predictor.predict(test).labels)
    squeeze, _ = squeezers(settings, IMAGES)

    def scores(batch: np.ndarray) -> np.ndarray:
        answer = predictor.predict(batch)
        return squeeze_scores(predictor.predict, batch, answer.scores, squeeze)

    clean_rate = float((scores(test) > threshold).mean())
    adv_rate = float((scores(adv[flipped]) > threshold).mean())
    assert adv_rate > clean_rate + 0.3, (adv_rate, clean_rate)


# -- the guard: modes, flags, reset ----------------------------------------------------------------


class _Model:
    """A stand-in predictor for the guard's plumbing: probabilities that depend on the input
    so squeezing moves them (the real model's behaviour is tested above)."""

    def predict(self, x: np.ndarray) -> Prediction:
        level = x.reshape(len(x), -1).mean(1)
        p = np.stack([level, 1 - level], axis=1)
        return Prediction([int(v) for v in p.argmax(1)], p, [0, 1])


def test_guard_alert_and_block(classifier: Any, digits: tuple[np.ndarray, np.ndarray]) -> None:
    flags = MemoryFlags()
    scan = np.stack([np.full((1, 8, 8), 0.001 * i, np.float32) for i in range(150)])
    for mode in ("alert", "block"):
        settings = DetectorSettings(extraction=mode, volume_floor=0, adversarial=mode,
                                    squeeze_bits=1, threshold=0.3)
        guard = ModelGuard(f"m-{mode}", settings, flags)
        model = _Model()
        verdicts = []
        for i in range(len(scan)):
            x = scan[i:i + 1]
            verdicts.append(guard.screen("eve", x, model.predict(x), model, IMAGES))
        flagged = [v for v in verdicts if any(d.detector == "extraction" for d in v.detections)]
        assert flagged
        first = verdicts.index(flagged[0])
        assert flags.get(f"m-{mode}", "eve") is not None
        if mode == "alert":
            # alert: every later request still carries the alert; nothing refused early
            assert all("alert:extraction" in v.alert for v in verdicts[first:])
            assert guard.refused("eve") is None
        else:
            assert flagged[0].blocked is not None
            refused = guard.refused("eve")
            assert refused is not None
            assert refused.action == "block"
            assert guard.refused("someone-else") is None
        # feature squeezing on a half-grey input: bit depth 1 moves it to black or white
        grey = np.full((1, 1, 8, 8), 0.45, np.float32)
        verdict = guard.screen("alice", grey, model.predict(grey), model, IMAGES)
        adversarial = [d for d in verdict.detections if d.detector == "adversarial"]
        assert adversarial
        assert adversarial[0].action == mode
        assert "scored over 0.3" in adversarial[0].message


def test_reset_clears_the_flag_and_the_history() -> None:
    config = load_config({"detectors": {"m": {"extraction": "block", "volume-floor": 10}}},
                         environ={})
    detectors = Detectors(config)
    assert detectors.enabled
    assert detectors.guard("other") is None  # both detectors off there
    guard = detectors.guard("m")
    assert guard is not None
    model = _Model()
    x = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
    verdict = guard.screen("eve", x, model.predict(x), model, IMAGES)
    assert verdict.blocked is not None
    assert verdict.blocked.detector == "extraction"
    assert guard.refused("eve") is not None
    assert detectors.reset("m", "eve") is True
    assert guard.refused("eve") is None
    assert detectors.reset("m", "eve") is False
    # the volume history went with it: a small request is fine again
    assert guard.screen("eve", x[:5], model.predict(x[:5]), model, IMAGES).blocked is None


def test_memory_flags_are_bounded() -> None:
    flags = MemoryFlags(limit=3)
    for i in range(5):
        flags.set("m", f"p{i}", "why")
    assert flags.get("m", "p0") is None
    assert flags.get("m", "p4") == "why"


@pytest.fixture
def redis_flags() -> Iterator[RedisFlags]:
    import redis

    prefix = f"bastion-test-{uuid.uuid4().hex}"
    flags = RedisFlags(REDIS_URL, prefix=prefix)
    yield flags
    flags.close()
    client = redis.Redis.from_url(REDIS_URL)
    found = list(client.scan_iter(f"{prefix}:*"))
    if found:
        client.delete(*found)
    client.close()


def test_redis_flags_are_shared(redis_flags: RedisFlags) -> None:
    """What one worker flags, another refuses; one reset clears it for all."""
    other = RedisFlags(REDIS_URL, prefix=redis_flags.prefix.removesuffix(":flag:"))
    try:
        assert redis_flags.get("m", "eve") is None
        redis_flags.set("m", "eve", "PRADA: W=0.5")
        assert other.get("m", "eve") == "PRADA: W=0.5"
        assert other.get("m", "eve\nx") is None  # names cannot collide through the key
        assert other.clear("m", "eve") is True
        assert redis_flags.get("m", "eve") is None
    finally:
        other.close()


def test_redis_failure_is_an_error_not_a_pass() -> None:
    from bastion.gateway.detectors import DetectorUnavailable

    flags = RedisFlags("redis://127.0.0.1:1/0", timeout=0.2)
    with pytest.raises(DetectorUnavailable, match="flag store"):
        flags.get("m", "eve")
    flags.close()
