"""Membership and attribute inference: an overfit model must leak measurably more."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.assess.data import Dataset, EvalData, check_arrays
from bastion.assess.privacy import assess_privacy, roc_metrics
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import PredictorTarget, SklearnTarget

from .conftest import FAST, sklearn_target


def test_roc_metrics_on_known_scores() -> None:
    members = np.array([0.9, 0.8, 0.7, 0.6])
    auc, low, one, roc = roc_metrics(members, np.array([0.1, 0.2, 0.3, 0.4]))
    assert (auc, low, one) == (1.0, 1.0, 1.0)
    assert roc[0] == (0.0, 0.0)
    assert roc[-1] == (1.0, 1.0)
    auc, low, one, _ = roc_metrics(np.ones(50), np.ones(50))  # indistinguishable
    assert auc == 0.5
    assert low == 0.0
    assert one == 0.0
    # one non-member outscores every member: TPR at 0 false positives is 0, at 1/4 it is 1
    auc, low, one, _ = roc_metrics(members, np.array([0.95, 0.2, 0.3, 0.4]))
    assert auc == 0.75
    assert low == 0.0
    assert one == 0.0


def test_overfit_forest_leaks_more_than_a_regularised_model(digits: EvalData) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    settings = AssessSettings(samples=300)
    forest = sklearn_target(RandomForestClassifier(n_estimators=30, random_state=0), digits)
    regular = sklearn_target(LogisticRegression(C=0.05, max_iter=300), digits)
    leaky = assess_privacy(forest, digits, settings)
    tight = assess_privacy(regular, digits, settings)
    assert not leaky.errors
    assert not tight.errors
    names = [a.name for a in leaky.attacks]
    assert names == ["loss threshold", "confidence threshold", "shadow models",
                     "label-only gap", "label-only noise robustness"]
    assert leaky.train_accuracy == 1.0  # memorised
    assert leaky.strongest is not None
    assert tight.strongest is not None
    assert leaky.strongest.auc > 0.7
    assert tight.strongest.auc < 0.6
    assert leaky.strongest.auc > tight.strongest.auc + 0.15
    shadow = next(a for a in leaky.attacks if a.name == "shadow models")
    assert shadow.auc > 0.65  # the learned attack finds it too, from shadow models alone
    assert "clones of RandomForestClassifier" in leaky.shadow_family
    for attack in leaky.attacks:
        assert attack.members == attack.nonmembers == 300
        assert 0.0 <= attack.tpr_at_0_1 <= attack.tpr_at_1 <= 1.0


def test_membership_is_reproducible_for_a_seed(logistic: SklearnTarget,
                                               digits: EvalData) -> None:
    first = assess_privacy(logistic, digits, FAST)
    second = assess_privacy(logistic, digits, FAST)
    assert [a.auc for a in first.attacks] == [a.auc for a in second.attacks]


def test_a_labels_only_endpoint_gets_the_label_only_attacks(logistic: SklearnTarget,
                                                            digits: EvalData) -> None:
    model = logistic.estimator
    labels = PredictorTarget(lambda x: model.predict(x.reshape(len(x), -1)), "labels",
                             digits.input_shape, digits.n_classes, digits.clip_values,
                             labels_only=True)
    result = assess_privacy(labels, digits, FAST)
    assert [a.name for a in result.attacks] == ["label-only gap",
                                                "label-only noise robustness"]
    assert any("labels only" in n for n in result.not_assessed)
    noise = result.attacks[1]
    assert noise.queries == 8 * (noise.members + noise.nonmembers)  # counted, per copy


def test_without_members_privacy_is_not_assessed(logistic: SklearnTarget,
                                                 digits: EvalData) -> None:
    holdout_only = EvalData.of(digits.holdout, None, clip_values=(0.0, 1.0))
    result = assess_privacy(logistic, holdout_only, FAST)
    assert result.attacks == ()
    assert "--members" in result.not_assessed[0]


def _tabular(rng: np.random.Generator, n: int) -> Dataset:
    """A binary sensitive feature (column 0) that decides the label with 3 noisy others."""
    secret = rng.integers(0, 2, n)
    noise = rng.uniform(0, 1, (n, 3))
    label = (secret + (noise[:, 0] > 0.8)) % 2
    return check_arrays(np.c_[secret, noise], label, "tabular")


@pytest.mark.parametrize("feature", [0, 2])
def test_attribute_inference_against_its_baseline(feature: int) -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(1)
    data = EvalData.of(_tabular(rng, 300), _tabular(rng, 300), clip_values=(0.0, 1.0))
    target = sklearn_target(RandomForestClassifier(n_estimators=20, random_state=0), data)
    settings = AssessSettings(samples=100, sensitive_feature=feature)
    result = assess_privacy(target, data, settings)
    assert not result.errors
    if feature == 0:  # categorical: attacked; the model's output reveals it
        attribute = result.attribute
        assert attribute is not None
        assert attribute.values == 2
        assert attribute.attack_accuracy > 0.8
        assert attribute.advantage > 0.2  # the other features alone say little
    else:  # continuous: reported as not assessed, not guessed at
        assert result.attribute is None
        assert any("distinct values" in n for n in result.not_assessed)
