"""Adversarial robustness on real models: the attacks must really hurt, within their budget."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.assess.data import EvalData
from bastion.assess.robustness import art_pgd, assess_robustness, hop_skip_jump, torch_pgd
from bastion.assess.targets import PredictorTarget, SklearnTarget, TorchTarget

from .conftest import FAST, sklearn_target


def _by(result, attack: str) -> dict[float, float]:  # type: ignore[no-untyped-def]
    return {p.epsilon: p.robust_accuracy for p in result.points if p.attack == attack}


def test_pgd_breaks_logistic_regression_through_art(logistic: SklearnTarget,
                                                    digits: EvalData) -> None:
    result = assess_robustness(logistic, digits, FAST)
    assert result.clean_accuracy > 0.9
    assert result.engine.startswith("ART (ScikitlearnLogisticRegression")
    pgd, fgsm = _by(result, "PGD-10"), _by(result, "FGSM")
    assert pgd[0.2] < 0.3 < result.clean_accuracy - 0.6  # far below clean accuracy
    assert pgd[0.05] > pgd[0.1] > pgd[0.2]  # a larger budget never helps the model
    for eps in pgd:
        assert pgd[eps] <= fgsm[eps] + 0.02  # many steps beat one
    for p in result.points:
        if p.attack != "HopSkipJump":
            assert p.mean_linf <= p.epsilon + 1e-5  # the perturbation stays in the budget
            assert p.queries == p.samples  # one query per adversarial example to check it


@pytest.mark.torch
def test_pgd_breaks_a_cnn_with_bastions_own_loop(cnn: TorchTarget, digits: EvalData) -> None:
    result = assess_robustness(cnn, digits, FAST)
    assert result.clean_accuracy > 0.9
    assert "Bastion" in result.engine
    pgd = _by(result, "PGD-10")
    assert pgd[0.2] < 0.2
    assert pgd[0.1] < result.clean_accuracy - 0.2
    worst = result.worst(0.2)
    assert worst is not None
    assert worst.success_rate > 0.8


@pytest.mark.torch
def test_bastion_pgd_matches_art_at_the_same_strength(cnn: TorchTarget,
                                                      digits: EvalData) -> None:
    x, y = digits.holdout.x[:300], digits.holdout.y[:300]
    eps, steps = 0.1, 10
    ours = torch_pgd(cnn, x, y, eps, 2.5 * eps / steps, steps)
    theirs = art_pgd(cnn.art_whitebox(), x, y, eps, 2.5 * eps / steps, steps)
    ours_acc = float((cnn.predict(ours) == y).mean())
    theirs_acc = float((cnn.predict(theirs) == y).mean())
    assert abs(ours_acc - theirs_acc) <= 0.02, (ours_acc, theirs_acc)
    assert ours_acc < float((cnn.predict(x) == y).mean()) - 0.2
    assert np.abs(ours - x).max() <= eps + 1e-6
    assert ours.min() >= 0.0
    assert ours.max() <= 1.0


@pytest.mark.torch
def test_torch_pgd_leaves_the_model_trainable(cnn: TorchTarget, digits: EvalData) -> None:
    for p in cnn.module.parameters():
        p.grad = None
    before = [p.requires_grad for p in cnn.module.parameters()]
    torch_pgd(cnn, digits.holdout.x[:20], digits.holdout.y[:20], 0.1, 0.05, 2)
    after = [p.requires_grad for p in cnn.module.parameters()]
    assert after == before
    assert all(after)
    assert all(p.grad is None for p in cnn.module.parameters())  # no weight gradients made


def test_hopskipjump_through_queries_only_is_reproducible(logistic: SklearnTarget,
                                                          digits: EvalData) -> None:
    model = logistic.estimator
    box = PredictorTarget(lambda x: model.predict_proba(x.reshape(len(x), -1)), "box",
                          digits.input_shape, digits.n_classes, digits.clip_values)
    assert not box.white_box
    x = digits.holdout.x[:3]
    starts = digits.holdout.x[10:13]
    assert (box.predict(starts) != box.predict(x)).all()
    state = np.random.get_state()[1].copy()
    first = hop_skip_jump(box, x, starts, seed=7, max_iter=3, max_eval=50, init_eval=10)
    assert (np.random.get_state()[1] == state).all()  # the caller's generator is untouched
    second = hop_skip_jump(box, x, starts, seed=7, max_iter=3, max_eval=50, init_eval=10)
    assert np.array_equal(first, second)
    assert (box.predict(first) != box.predict(x)).all()  # every sample flipped
    assert box.queries > 100


def test_a_model_without_gradients_is_attacked_through_queries(digits: EvalData) -> None:
    from sklearn.ensemble import RandomForestClassifier

    forest = sklearn_target(RandomForestClassifier(n_estimators=10, random_state=0), digits)
    result = assess_robustness(forest, digits, FAST)
    assert not forest.white_box
    assert any("no gradients" in n for n in result.not_assessed)
    assert {p.attack for p in result.points} == {"HopSkipJump"}
    assert result.blackbox_samples == FAST.blackbox_samples
    hsj = _by(result, "HopSkipJump")
    assert hsj[0.05] >= hsj[0.2]
