"""Model extraction: more queries must buy a more faithful copy, and every query is counted."""

from __future__ import annotations

import numpy as np

from bastion.assess.data import EvalData
from bastion.assess.extraction import _query_set, assess_extraction, budgets
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import SklearnTarget

from .conftest import FAST


def test_budgets_end_at_the_maximum() -> None:
    assert budgets(1000) == (50, 100, 200, 500, 1000)
    assert budgets(300) == (50, 100, 200, 300)
    assert budgets(20) == (20,)


def test_copycat_fidelity_rises_with_queries(logistic: SklearnTarget,
                                             digits: EvalData) -> None:
    start = logistic.queries
    result = assess_extraction(logistic, digits, AssessSettings(max_queries=600))
    fidelity = {p.queries: p.fidelity for p in result.points}
    assert list(fidelity) == [50, 100, 200, 500, 600]  # 600 > the pool: mixups fill it
    assert fidelity[600] > fidelity[50] + 0.1
    assert fidelity[500] > fidelity[100] > fidelity[50]
    assert fidelity[600] > 0.85
    # the attacker's queries (nested sets: 600 in all) plus the defender's measurement
    assert result.queries == 600
    assert logistic.queries - start == 600 + result.test_samples
    assert result.victim_accuracy > 0.9


def test_a_query_budget_stops_the_copycat(logistic: SklearnTarget,
                                          digits: EvalData) -> None:
    logistic.budget = logistic.queries + 700  # the measurement (449) and 250 queries
    try:
        result = assess_extraction(logistic, digits, FAST)
    finally:
        logistic.budget = None
    assert [p.queries for p in result.points] == [50, 100, 200]
    assert "query budget exhausted" in result.errors[0]


def test_queries_beyond_the_pool_are_mixups_inside_the_range(digits: EvalData) -> None:
    pool = digits.holdout.x[:100]
    rng = np.random.default_rng(0)
    queries = _query_set(pool, 250, rng, (0.0, 1.0))
    assert queries.shape == (250, 1, 8, 8)
    assert queries.min() >= 0.0
    assert queries.max() <= 1.0
    # the first 100 are the pool itself, shuffled
    assert {q.tobytes() for q in queries[:100]} == {p.tobytes() for p in pool}
