"""Adversarial robustness: how much of the input range an attacker must change to flip answers.

White-box (the attacker has the weights): FGSM (one signed-gradient step, Goodfellow et al.
2015) and PGD (``steps`` projected signed-gradient steps of 2.5·ε/steps, Madry et al. 2018),
L-infinity, swept over ε. For PyTorch models Bastion runs its own batched PGD with the
parameters' ``requires_grad`` switched off: the attack needs gradients with respect to the
input only, and ART's wrapper also computes the weights' gradients on every step, which costs
it 1.4–1.9× the time (``benchmarks/assess``); its robust accuracy is checked against ART's in
the tests. Other gradient-capable models (scikit-learn logistic regression, SVC) go through
ART's ProjectedGradientDescent and FastGradientMethod.

Black-box (queries only, labels suffice): ART's HopSkipJump (Chen et al. 2020), L-infinity,
on a few samples, started from the nearest evaluation sample the model labels differently (a
seeded, reproducible start; ART's own start point comes from an unseeded generator). It finds
a small adversarial perturbation per sample; the robust accuracy at ε is the share of samples
still correct with no perturbation found within ε — an upper bound, as any attack gives.

ε and perturbation sizes are fractions of the input's value range (``clip_values``), so one
policy applies to pixels in [0, 255] and to features scaled to [0, 1] alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bastion.assess.data import Dataset, EvalData
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import SklearnTarget, Target, TorchTarget, quietly

#: Samples per PGD batch: large batches amortise the framework's per-call overhead.
PGD_BATCH = 500
#: Evaluation samples HopSkipJump's start points are chosen from (each costs one query).
START_POOL = 2000


@dataclass(frozen=True, slots=True)
class AttackPoint:
    """One attack at one budget."""

    attack: str
    epsilon: float
    robust_accuracy: float
    success_rate: float  # of the samples the model got right, the share the attack flipped
    mean_l2: float  # perturbation size, fraction of the value range
    mean_linf: float
    samples: int
    queries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class RobustnessResult:
    clean_accuracy: float
    samples: int
    points: tuple[AttackPoint, ...] = ()
    engine: str = ""
    #: What could not be measured, and why (e.g. no gradients).
    not_assessed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    blackbox_samples: int = 0
    #: Minimal L-infinity perturbation found per black-box sample (0: already wrong).
    blackbox_linf: tuple[float, ...] = field(default=())

    def at(self, epsilon: float) -> list[AttackPoint]:
        return [p for p in self.points if abs(p.epsilon - epsilon) < 1e-9]

    def worst(self, epsilon: float) -> AttackPoint | None:
        """The attack that left the lowest accuracy at this budget."""
        points = self.at(epsilon)
        return min(points, key=lambda p: p.robust_accuracy) if points else None

    def to_dict(self) -> dict[str, Any]:
        return {"clean_accuracy": self.clean_accuracy, "samples": self.samples,
                "engine": self.engine, "points": [p.to_dict() for p in self.points],
                "not_assessed": list(self.not_assessed), "errors": list(self.errors),
                "blackbox_samples": self.blackbox_samples,
                "blackbox_linf": list(self.blackbox_linf)}


# -- the attacks ---------------------------------------------------------------------------------


def torch_pgd(target: TorchTarget, x: NDArray[np.float32], y: NDArray[np.int64], eps: float,
              step: float, steps: int, *, batch: int = PGD_BATCH) -> NDArray[np.float32]:
    """Untargeted L-infinity PGD (no random start), in input units; FGSM is ``steps=1,
    step=eps``. Batched, gradients with respect to the input only."""
    import torch
    import torch.nn.functional as F

    module = target.module
    low, high = target.clip_values
    saved = [(p, p.requires_grad) for p in module.parameters()]
    out = np.empty_like(x)
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        with torch.enable_grad():
            for start in range(0, len(x), batch):
                x0 = torch.from_numpy(x[start:start + batch])
                labels = torch.from_numpy(y[start:start + batch])
                lower = (x0 - eps).clamp_(min=low)
                upper = (x0 + eps).clamp_(max=high)
                xa = x0.clone()
                for _ in range(steps):
                    xa.requires_grad_(True)
                    loss = F.cross_entropy(target.logits(xa), labels, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, xa)
                    xa = torch.minimum(torch.maximum(xa.detach() + step * grad.sign(), lower),
                                       upper)
                out[start:start + batch] = xa.numpy()
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
    return out


def art_pgd(classifier: Any, x: NDArray[np.float32], y: NDArray[np.int64], eps: float,
            step: float, steps: int, *, batch: int = PGD_BATCH) -> NDArray[np.float32]:
    """The same PGD through ART (no random start, true labels)."""
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=step,
                                      max_iter=steps, num_random_init=0, batch_size=batch,
                                      verbose=False)
    return np.asarray(quietly(attack.generate, x, y=_one_hot(y, classifier.nb_classes)),
                      dtype=np.float32)


def art_fgsm(classifier: Any, x: NDArray[np.float32], y: NDArray[np.int64],
             eps: float) -> NDArray[np.float32]:
    from art.attacks.evasion import FastGradientMethod

    attack = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=PGD_BATCH)
    return np.asarray(quietly(attack.generate, x, y=_one_hot(y, classifier.nb_classes)),
                      dtype=np.float32)


def _one_hot(y: NDArray[np.int64], n: int) -> NDArray[np.float32]:
    return np.eye(n, dtype=np.float32)[y]


def hop_skip_jump(target: Target, x: NDArray[np.float32], starts: NDArray[np.float32],
                  seed: int, *, max_iter: int = 10, max_eval: int = 200,
                  init_eval: int = 20) -> NDArray[np.float32]:
    """ART's HopSkipJump (L-infinity, untargeted) through queries only, from given starts.

    ART draws its gradient-estimation noise from NumPy's global generator: it is seeded here
    and restored afterwards, so a run is reproducible without disturbing the caller."""
    from art.attacks.evasion import HopSkipJump

    attack = HopSkipJump(target.art_blackbox(), norm=np.inf, max_iter=max_iter,
                         max_eval=max_eval, init_eval=init_eval, batch_size=max_eval,
                         verbose=False)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return np.asarray(quietly(attack.generate, x.astype(np.float32),
                                 x_adv_init=starts.astype(np.float32)), dtype=np.float32)
    finally:
        np.random.set_state(state)


# -- the sweep -----------------------------------------------------------------------------------


def assess_robustness(target: Target, data: EvalData, settings: AssessSettings,
                      progress: Callable[[str], None] | None = None) -> RobustnessResult:
    """Clean accuracy, then each attack the target allows over the epsilon sweep."""
    say = progress or (lambda _: None)
    subset = data.holdout.take(settings.samples, settings.seed)
    x, y = subset.x, subset.y
    span = data.value_range
    clean = target.predict(x)
    clean_accuracy = float((clean == y).mean())
    points: list[AttackPoint] = []
    not_assessed: list[str] = []
    errors: list[str] = []
    engine = "queries only"
    white = _whitebox(target)
    if white is None:
        not_assessed.append(f"white-box attacks (FGSM, PGD): {target.family} gives no "
                            "gradients to Bastion")
    else:
        engine, fgsm, pgd = white
        for eps in settings.sweep:
            step = 2.5 * eps / settings.pgd_steps
            for name, run in (("FGSM", lambda e=eps: fgsm(x, y, e * span)),
                              (f"PGD-{settings.pgd_steps}",
                               lambda e=eps, s=step: pgd(x, y, e * span, s * span,
                                                         settings.pgd_steps))):
                say(f"{name} ε={eps:g}")
                try:
                    points.append(_measure(target, name, eps, x, y, clean, run, span))
                except Exception as exc:  # an attack's failure is a finding, not a crash
                    errors.append(f"{name} at ε={eps:g}: {type(exc).__name__}: {exc}")
    blackbox: tuple[float, ...] = ()
    count = min(settings.blackbox_samples, subset.n_samples)
    if count:
        say(f"HopSkipJump on {count} samples")
        try:
            pool = data.holdout.take(START_POOL, settings.seed + 3)
            found, hsj_points = _blackbox(target, pool, subset, count, settings, span)
            blackbox = tuple(found)
            points.extend(hsj_points)
        except Exception as exc:
            errors.append(f"HopSkipJump: {type(exc).__name__}: {exc}")
    else:
        not_assessed.append("black-box attack (HopSkipJump): blackbox-samples is 0")
    return RobustnessResult(clean_accuracy, subset.n_samples, tuple(points), engine,
                            tuple(not_assessed), tuple(errors), count, blackbox)


Attack = Callable[..., NDArray[np.float32]]


def _whitebox(target: Target) -> tuple[str, Attack, Attack] | None:
    """The engine and the FGSM and PGD functions (input units) for this target, if any."""
    if isinstance(target, TorchTarget):
        def fgsm(x: NDArray[np.float32], y: NDArray[np.int64], eps: float) -> Any:
            return torch_pgd(target, x, y, eps, eps, 1)

        def pgd(x: NDArray[np.float32], y: NDArray[np.int64], eps: float, step: float,
                steps: int) -> Any:
            return torch_pgd(target, x, y, eps, step, steps)

        return "Bastion batched PyTorch PGD (input gradients only)", fgsm, pgd
    if isinstance(target, SklearnTarget):
        classifier = target.art_whitebox()
        if classifier is None:
            return None

        def flat(fn: Attack) -> Attack:
            def run(x: NDArray[np.float32], *args: Any) -> NDArray[np.float32]:
                return fn(classifier, x.reshape(len(x), -1), *args).reshape(x.shape)
            return run

        return f"ART ({type(classifier).__name__})", flat(art_fgsm), flat(art_pgd)
    return None


def _measure(target: Target, name: str, eps: float, x: NDArray[np.float32],
             y: NDArray[np.int64], clean: NDArray[np.int64],
             run: Callable[[], NDArray[np.float32]], span: float) -> AttackPoint:
    began, queries = time.perf_counter(), target.queries
    adv = run()
    predicted = target.predict(adv)
    delta = (adv - x).reshape(len(x), -1) / span
    right = clean == y
    return AttackPoint(
        attack=name, epsilon=eps, robust_accuracy=float((predicted == y).mean()),
        success_rate=float((predicted[right] != y[right]).mean()) if right.any() else 0.0,
        mean_l2=float(np.linalg.norm(delta, axis=1).mean()),
        mean_linf=float(np.abs(delta).max(1).mean()), samples=len(x),
        queries=target.queries - queries, seconds=time.perf_counter() - began)


def _blackbox(target: Target, pool: Dataset, subset: Dataset, count: int,
              settings: AssessSettings, span: float) -> tuple[list[float], list[AttackPoint]]:
    """HopSkipJump on the first ``count`` samples of the subset; the sweep is read off the
    minimal perturbation found for each."""
    began, queries = time.perf_counter(), target.queries
    x, y = subset.x[:count], subset.y[:count]
    pool_pred = target.predict(pool.x)
    pred = target.predict(x)
    starts = np.empty_like(x)
    flat_pool = pool.x.reshape(len(pool.x), -1)
    for i in range(count):
        other = pool_pred != pred[i]
        if not other.any():
            starts[i] = x[i]
            continue
        distance = np.abs(flat_pool[other] - x[i].reshape(-1)).max(1)
        starts[i] = pool.x[other][int(distance.argmin())]
    todo = np.flatnonzero(pred == y)
    linf = np.zeros(count, dtype=np.float64)  # already wrong: broken at zero perturbation
    l2 = np.zeros(count, dtype=np.float64)
    if len(todo):
        adv = hop_skip_jump(target, x[todo], starts[todo], settings.seed)
        flipped = target.predict(adv) != pred[todo]
        delta = (adv - x[todo]).reshape(len(todo), -1) / span
        linf[todo] = np.where(flipped, np.abs(delta).max(1), np.inf)
        l2[todo] = np.where(flipped, np.linalg.norm(delta, axis=1), np.inf)
    seconds = time.perf_counter() - began
    spent = target.queries - queries
    points = []
    right = pred == y
    for eps in settings.sweep:
        broken = linf <= eps + 1e-6
        finite = np.isfinite(linf) & broken & right
        points.append(AttackPoint(
            attack="HopSkipJump", epsilon=eps,
            robust_accuracy=float((right & ~broken).mean()),
            success_rate=float(broken[right].mean()) if right.any() else 0.0,
            mean_l2=float(l2[finite].mean()) if finite.any() else 0.0,
            mean_linf=float(linf[finite].mean()) if finite.any() else 0.0,
            samples=count, queries=spent, seconds=seconds))
    return [float(v) if np.isfinite(v) else -1.0 for v in linf], points
