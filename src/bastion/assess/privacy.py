"""Privacy: does the model give away who was in its training data?

Membership inference, each attack scored on the same balanced evaluation set (training
records against records the model never saw) and reported as ROC AUC and true-positive rate
at 0.1% and 1% false-positive rate — the figures Carlini et al. (2022) argue for, since an
attack that is sure about a few records is a real leak even at a modest AUC:

- ``loss threshold`` (Yeom et al. 2018): members have lower loss; score = log p(y|x);
- ``confidence threshold``: score = the top class probability (needs no label);
- ``shadow models`` (Shokri et al. 2017): shadow models trained on the attacker's own data
  (half in, half out) teach an attack model what member outputs look like — ART's
  ``ShadowModels`` and ``MembershipInferenceBlackBox``, with a seeded random-forest attack
  model; the shadows are clones of the target's algorithm where Bastion can make them;
- label-only, for endpoints that only answer labels: the ``gap attack`` (member ⇔ correctly
  classified) and ``noise robustness`` (Choquette-Choo et al. 2021: members stay correctly
  classified under more random perturbations).

Thresholds are not tuned on the evaluation set: AUC and TPR-at-FPR are threshold-free, the
best an attacker could do with a perfectly chosen threshold. With n non-members the smallest
non-zero false-positive rate is 1/n, so TPR at 0.1% FPR needs more than 1,000 non-members to
mean anything other than "at zero false positives"; the report says how many there were.

Attribute inference (``sensitive_feature``, a categorical feature of tabular data): ART's
``AttributeInferenceBlackBox`` (other features + model output → the feature) against
``AttributeInferenceBaseline`` (other features only), on the members; the exposure is the
accuracy the model's output adds. Model inversion of class representatives (MIFace) is not
measured: its output is a picture to look at, not a figure to hold against a policy.
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
from bastion.assess.targets import Probabilities, ShadowModel, Target, quietly

#: Noisy copies per record for the label-only noise-robustness attack, and their spread.
NOISE_COPIES = 8
NOISE_SCALE = 0.1  # standard deviation, fraction of the value range
#: Points kept from each ROC curve for the report's plot.
ROC_POINTS = 200
MAX_CATEGORIES = 20
#: The attacker's own data for shadow models, at most this many times the evaluation size.
SHADOW_FACTOR = 4


@dataclass(frozen=True, slots=True)
class MembershipAttack:
    name: str
    auc: float
    tpr_at_0_1: float  # at 0.1% false-positive rate
    tpr_at_1: float  # at 1% false-positive rate
    members: int
    nonmembers: int
    queries: int
    seconds: float
    note: str = ""
    #: (fpr, tpr) points of the ROC curve, thinned for plotting.
    roc: tuple[tuple[float, float], ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "roc"}
        out["roc"] = [list(p) for p in self.roc]
        return out


@dataclass(frozen=True, slots=True)
class AttributeResult:
    feature: int
    attack_accuracy: float
    baseline_accuracy: float
    samples: int
    values: int

    @property
    def advantage(self) -> float:
        return self.attack_accuracy - self.baseline_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "attack_accuracy": self.attack_accuracy,
                "baseline_accuracy": self.baseline_accuracy, "advantage": self.advantage,
                "samples": self.samples, "values": self.values}


@dataclass(frozen=True, slots=True)
class PrivacyResult:
    attacks: tuple[MembershipAttack, ...] = ()
    train_accuracy: float | None = None
    test_accuracy: float | None = None
    shadow_family: str = ""
    attribute: AttributeResult | None = None
    not_assessed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def strongest(self) -> MembershipAttack | None:
        """The attack with the highest AUC."""
        return max(self.attacks, key=lambda a: a.auc) if self.attacks else None

    def to_dict(self) -> dict[str, Any]:
        return {"attacks": [a.to_dict() for a in self.attacks],
                "train_accuracy": self.train_accuracy, "test_accuracy": self.test_accuracy,
                "shadow_family": self.shadow_family,
                "attribute": self.attribute.to_dict() if self.attribute else None,
                "not_assessed": list(self.not_assessed), "errors": list(self.errors)}


# -- metrics -------------------------------------------------------------------------------------


def roc_metrics(member_scores: NDArray[Any], nonmember_scores: NDArray[Any]) -> tuple[
        float, float, float, tuple[tuple[float, float], ...]]:
    """AUC, TPR at 0.1% and at 1% FPR, and a thinned ROC curve; higher score = member.

    TPR at an FPR is the best true-positive rate among thresholds whose false-positive rate
    does not exceed it (the ROC is a step function: no interpolation in the attacker's
    favour)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    scores = np.concatenate([member_scores, nonmember_scores]).astype(np.float64)
    fpr, tpr, _ = roc_curve(labels, scores)
    auc = float(roc_auc_score(labels, scores))

    def tpr_at(limit: float) -> float:
        return float(tpr[fpr <= limit + 1e-12].max())

    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), ROC_POINTS)).astype(int))
    roc = tuple((float(fpr[i]), float(tpr[i])) for i in keep)
    return auc, tpr_at(0.001), tpr_at(0.01), roc


# -- the assessment ------------------------------------------------------------------------------


def assess_privacy(target: Target, data: EvalData, settings: AssessSettings,
                   progress: Callable[[str], None] | None = None) -> PrivacyResult:
    say = progress or (lambda _: None)
    members = data.members
    if members is None:
        return PrivacyResult(not_assessed=(
            "membership inference: no member data (the model's training records) was given; "
            "pass --members",))
    seed = settings.seed
    shadow_data, nonmembers = data.holdout.split(0.5, seed)
    size = min(nonmembers.n_samples, members.n_samples, settings.samples)
    nonmembers = nonmembers.take(size, seed)
    eval_members = members.take(size, seed + 1)
    shadow_data = shadow_data.take(SHADOW_FACTOR * size, seed + 2)  # bounds shadow training
    began, queries = time.perf_counter(), target.queries
    member_pred = target.predict_proba(eval_members.x)
    nonmember_pred = target.predict_proba(nonmembers.x)
    score_queries = target.queries - queries
    score_seconds = time.perf_counter() - began
    train_acc = float((member_pred.argmax(1) == eval_members.y).mean())
    test_acc = float((nonmember_pred.argmax(1) == nonmembers.y).mean())
    attacks: list[MembershipAttack] = []
    errors: list[str] = []
    not_assessed: list[str] = []
    family = ""

    def add(name: str, member_scores: NDArray[Any], nonmember_scores: NDArray[Any],
            spent: int, seconds: float, note: str = "") -> None:
        auc, low, one, roc = roc_metrics(member_scores, nonmember_scores)
        attacks.append(MembershipAttack(name, auc, low, one, len(member_scores),
                                        len(nonmember_scores), spent, seconds, note, roc))

    if target.labels_only:
        not_assessed.append("score-based membership inference (loss, confidence, shadow "
                            "models): the model answers labels only")
    else:
        say("membership inference: loss and confidence thresholds")
        add("loss threshold", _log_likelihood(member_pred, eval_members.y),
            _log_likelihood(nonmember_pred, nonmembers.y), score_queries, score_seconds)
        add("confidence threshold", member_pred.max(1), nonmember_pred.max(1), score_queries,
            score_seconds)
        say("membership inference: shadow models")
        shadow = target.shadow(seed)
        family = shadow.family
        try:
            started = time.perf_counter()
            scores = _shadow_attack(target, shadow, shadow_data, eval_members, nonmembers,
                                    member_pred, nonmember_pred, seed)
            add("shadow models", *scores, score_queries, time.perf_counter() - started,
                f"3 shadow models: {shadow.family}; attack model: random forest")
        except Exception as exc:
            errors.append(f"shadow-model membership inference: {type(exc).__name__}: {exc}")
    say("membership inference: label-only")
    add("label-only gap", (member_pred.argmax(1) == eval_members.y).astype(float),
        (nonmember_pred.argmax(1) == nonmembers.y).astype(float), score_queries, score_seconds)
    try:
        started, queries = time.perf_counter(), target.queries
        rng = np.random.default_rng(seed)
        member_noise = _noise_robustness(target, eval_members, data, rng)
        nonmember_noise = _noise_robustness(target, nonmembers, data, rng)
        add("label-only noise robustness", member_noise, nonmember_noise,
            target.queries - queries, time.perf_counter() - started,
            f"{NOISE_COPIES} noisy copies per record, σ = {NOISE_SCALE:g} of the range")
    except Exception as exc:
        errors.append(f"label-only noise-robustness attack: {type(exc).__name__}: {exc}")
    attribute = None
    if settings.sensitive_feature is None:
        not_assessed.append("attribute inference: no sensitive feature named "
                            "(--sensitive-feature)")
    else:
        say("attribute inference")
        try:
            attribute, why = _attribute(target, data, members, settings)
            if why:
                not_assessed.append(f"attribute inference: {why}")
        except Exception as exc:
            errors.append(f"attribute inference: {type(exc).__name__}: {exc}")
    not_assessed.append("model inversion (MIFace class reconstructions): not measured; no "
                        "figure of it can be held against a policy")
    return PrivacyResult(tuple(attacks), train_acc, test_acc, family, attribute,
                         tuple(not_assessed), tuple(errors))


def _log_likelihood(pred: Probabilities, y: NDArray[np.int64]) -> NDArray[np.float64]:
    return np.log(np.clip(pred[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0))


class _ShadowTemplate:
    """What ART's ``ShadowModels`` asks of a template: a clone that fits and predicts."""

    def __init__(self, shadow: ShadowModel, input_shape: tuple[int, ...]) -> None:
        self._shadow = shadow
        self.input_shape = input_shape
        self._predict: Callable[[NDArray[np.float32]], Probabilities] | None = None

    def clone_for_refitting(self) -> _ShadowTemplate:
        return _ShadowTemplate(self._shadow, self.input_shape)

    def fit(self, x: NDArray[Any], y: NDArray[Any], **_: Any) -> None:
        y = np.asarray(y)
        labels = y.argmax(1) if y.ndim == 2 else y
        self._predict = self._shadow.fit(np.asarray(x, np.float32), labels.astype(np.int64))

    def predict(self, x: NDArray[Any], **_: Any) -> Probabilities:
        assert self._predict is not None, "predict before fit"
        return self._predict(np.asarray(x, np.float32))


def _shadow_attack(target: Target, shadow: ShadowModel, shadow_data: Dataset,
                   members: Dataset, nonmembers: Dataset, member_pred: Probabilities,
                   nonmember_pred: Probabilities, seed: int) -> tuple[
                       NDArray[Any], NDArray[Any]]:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        ShadowModels,
    )
    from sklearn.ensemble import RandomForestClassifier

    shadows = ShadowModels(_ShadowTemplate(shadow, target.input_shape),
                           num_shadow_models=3, random_state=seed)
    (_, in_y, in_pred), (_, out_y, out_pred) = quietly(
        shadows.generate_shadow_dataset, shadow_data.x, shadow_data.y)
    attack = MembershipInferenceBlackBox(target.art_blackbox(), input_type="prediction",
                                         attack_model_type="rf")
    # ART's default random forest, seeded afterwards: a supplied model would answer labels,
    # not scores (and ART tests it with ``if attack_model:``, which an unfitted ensemble fails)
    attack.attack_model = RandomForestClassifier(n_estimators=100, random_state=seed)
    quietly(attack.fit, y=in_y, test_y=out_y, pred=in_pred, test_pred=out_pred)
    member_scores = quietly(attack.infer, None, members.y, pred=member_pred, probabilities=True)
    nonmember_scores = quietly(attack.infer, None, nonmembers.y, pred=nonmember_pred,
                              probabilities=True)
    return (np.asarray(member_scores, np.float64).reshape(len(members.y), -1)[:, -1],
            np.asarray(nonmember_scores, np.float64).reshape(len(nonmembers.y), -1)[:, -1])


def _noise_robustness(target: Target, records: Dataset, data: EvalData,
                      rng: np.random.Generator) -> NDArray[np.float64]:
    """Share of noisy copies of each record still given its true label."""
    low, high = data.clip_values
    sigma = NOISE_SCALE * data.value_range
    correct = np.zeros(records.n_samples, dtype=np.float64)
    for _ in range(NOISE_COPIES):
        noisy = np.clip(records.x + rng.normal(0.0, sigma, records.x.shape), low, high)
        correct += target.predict(noisy.astype(np.float32)) == records.y
    return correct / NOISE_COPIES


def _attribute(target: Target, data: EvalData, members: Dataset,
               settings: AssessSettings) -> tuple[AttributeResult | None, str]:
    from art.attacks.inference.attribute_inference import (
        AttributeInferenceBaseline,
        AttributeInferenceBlackBox,
    )
    from sklearn.ensemble import RandomForestClassifier

    feature = settings.sensitive_feature
    assert feature is not None
    if data.kind != "tabular":
        return None, "only for tabular data"
    width = data.input_shape[0]
    if feature >= width:
        return None, f"feature {feature} does not exist (the data has {width} features)"
    known = data.holdout.x
    values = np.unique(np.concatenate([known[:, feature], members.x[:, feature]]))
    if len(values) > MAX_CATEGORIES:
        return None, (f"feature {feature} has {len(values)} distinct values; only categorical "
                      f"features (at most {MAX_CATEGORIES} values) are attacked")
    seed = settings.seed
    # ART's default random forests, seeded afterwards: ART tests a supplied model with
    # ``if attack_model:``, which an unfitted scikit-learn ensemble fails (len() of no trees)
    attack = AttributeInferenceBlackBox(target.art_blackbox(), attack_feature=feature,
                                        attack_model_type="rf")
    attack.attack_model = RandomForestClassifier(n_estimators=100, random_state=seed)
    quietly(attack.fit, known)
    others = np.delete(members.x, feature, axis=1)
    pred = target.predict(members.x).reshape(-1, 1).astype(np.float32)  # as ART's fit uses
    inferred = quietly(attack.infer, others, pred=pred, values=list(values))
    baseline = AttributeInferenceBaseline(attack_feature=feature, attack_model_type="rf")
    baseline.attack_model = RandomForestClassifier(n_estimators=100, random_state=seed)
    quietly(baseline.fit, known)
    guessed = quietly(baseline.infer, others, values=list(values))
    truth = members.x[:, feature]
    return AttributeResult(feature, float((np.asarray(inferred).reshape(-1) == truth).mean()),
                           float((np.asarray(guessed).reshape(-1) == truth).mean()),
                           members.n_samples, len(values)), ""
