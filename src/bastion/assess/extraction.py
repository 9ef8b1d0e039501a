"""Extraction: how many queries buy a working copy of the model?

A copycat attack (Correia-Silva et al. 2018; Tramèr et al. 2016 for the API setting): the
attacker sends unlabelled inputs from the problem domain, keeps the victim's answers as
labels, and trains a substitute on them. Fidelity is the share of held-out inputs on which
substitute and victim agree; it is measured at growing query budgets (50, 100, 200, 500,
1000, ... up to ``max-queries``) on nested query sets, so the curve shows what each extra
query buys.

The attacker's inputs are half of the evaluation data the model never saw (the other half
measures fidelity). When the budget exceeds that pool, the rest are mixup interpolations of
pool samples (a convex mix of two inputs) — an attacker with a little real data stretches it
the same way. The substitute is a scikit-learn MLP trained on labels only, so the figure also
holds against an endpoint that hides its scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bastion.assess.data import EvalData
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import BudgetExhausted, QueriesRefused, Target, quietly

LADDER = (50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
SUBSTITUTE = "scikit-learn MLP (one hidden layer of 128), trained on the victim's labels"


@dataclass(frozen=True, slots=True)
class ExtractionPoint:
    queries: int
    fidelity: float  # agreement with the victim on held-out inputs
    accuracy: float  # the substitute's own accuracy on their true labels

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "fidelity": self.fidelity, "accuracy": self.accuracy}


@dataclass(frozen=True, slots=True)
class ExtractionResult:
    points: tuple[ExtractionPoint, ...]
    test_samples: int
    pool_samples: int
    victim_accuracy: float
    queries: int
    seconds: float
    substitute: str = SUBSTITUTE
    errors: tuple[str, ...] = ()

    def first_reaching(self, fidelity: float) -> ExtractionPoint | None:
        """The smallest budget at which the copy reached this fidelity."""
        return next((p for p in self.points if p.fidelity >= fidelity), None)

    def to_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points], "test_samples": self.test_samples,
                "pool_samples": self.pool_samples, "victim_accuracy": self.victim_accuracy,
                "queries": self.queries, "seconds": self.seconds, "substitute": self.substitute,
                "errors": list(self.errors)}


def budgets(max_queries: int) -> tuple[int, ...]:
    """The standard ladder up to ``max_queries``, which is always the last rung."""
    return (*(b for b in LADDER if b < max_queries), max_queries)


def assess_extraction(target: Target, data: EvalData, settings: AssessSettings,
                      progress: Callable[[str], None] | None = None) -> ExtractionResult:
    say = progress or (lambda _: None)
    seed = settings.seed
    rng = np.random.default_rng(seed)
    pool, test = data.holdout.split(0.5, seed + 2)
    began, start = time.perf_counter(), target.queries
    ladder = budgets(settings.max_queries)
    queries = _query_set(pool.x, ladder[-1], rng, data.clip_values)
    victim_on_test = target.predict(test.x)  # the defender's measurement, not the attacker's
    measuring = target.queries - start
    labels = np.empty(0, dtype=np.int64)
    points: list[ExtractionPoint] = []
    errors: list[str] = []
    for budget in ladder:
        say(f"copycat with {budget} queries")
        try:
            labels = np.concatenate([labels, target.predict(queries[len(labels):budget])])
        except (BudgetExhausted, QueriesRefused) as exc:
            errors.append(f"copycat stopped at {len(labels)} queries: {exc}")
            break
        substitute = _train(queries[:budget], labels, seed)
        copy = substitute(test.x)
        points.append(ExtractionPoint(budget, float((copy == victim_on_test).mean()),
                                      float((copy == test.y).mean())))
    return ExtractionResult(tuple(points), test.n_samples, pool.n_samples,
                            float((victim_on_test == test.y).mean()),
                            target.queries - start - measuring, time.perf_counter() - began,
                            errors=tuple(errors))


def _query_set(pool: NDArray[np.float32], count: int, rng: np.random.Generator,
               clip: tuple[float, float]) -> NDArray[np.float32]:
    """The pool in a random order, then mixup interpolations until ``count`` inputs."""
    order = pool[rng.permutation(len(pool))]
    if count <= len(order):
        return order[:count]
    extra = count - len(order)
    a = order[rng.integers(0, len(order), extra)]
    b = order[rng.integers(0, len(order), extra)]
    mix = rng.uniform(0.0, 1.0, (extra,) + (1,) * (pool.ndim - 1)).astype(np.float32)
    mixed = np.clip(mix * a + (1 - mix) * b, *clip).astype(np.float32)
    return np.concatenate([order, mixed])


def _train(x: NDArray[np.float32], y: NDArray[np.int64], seed: int) -> Callable[
        [NDArray[np.float32]], NDArray[np.int64]]:
    """The substitute; a single answered class makes a constant copy."""
    from sklearn.neural_network import MLPClassifier

    flat = x.reshape(len(x), -1)
    if len(np.unique(y)) < 2:
        only = int(y[0])
        return lambda z: np.full(len(z), only, dtype=np.int64)
    model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=200, random_state=seed)
    quietly(model.fit, flat, y)
    return lambda z: np.asarray(model.predict(z.reshape(len(z), -1))).astype(np.int64)
