"""Small real models on scikit-learn's digits, trained once per session.

Everything here is small on purpose (a few hundred samples, 10 PGD steps, a handful of
HopSkipJump samples): the assess tests must stay under a minute on two shared cores, and
each still asserts an effect that a broken attack could not produce.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from bastion.assess.data import EvalData, demo_data
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import SklearnTarget, TorchTarget

#: Small but real: what the tests run with.
FAST = AssessSettings(epsilons=(0.05, 0.1, 0.2), samples=200, blackbox_samples=4,
                      pgd_steps=10, max_queries=500)


def fit(model: Any, data: EvalData) -> Any:
    members = data.members
    assert members is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the helper models
        model.fit(members.x.reshape(members.n_samples, -1), members.y)
    return model


def sklearn_target(model: Any, data: EvalData, name: str = "model") -> SklearnTarget:
    return SklearnTarget(fit(model, data), name, data.input_shape, data.n_classes,
                         data.clip_values)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """As ``bastion assess --demo`` runs: on a shared machine, two threads stall each other."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits() -> EvalData:
    return demo_data("digits", 0)


@pytest.fixture(scope="session")
def logistic(digits: EvalData) -> SklearnTarget:
    from sklearn.linear_model import LogisticRegression

    return sklearn_target(LogisticRegression(max_iter=500), digits, "logistic")


@pytest.fixture(scope="session")
def cnn(digits: EvalData) -> TorchTarget:
    pytest.importorskip("torch")
    from bastion.assess.demo import train_cnn

    members = digits.members
    assert members is not None
    module = train_cnn(members.x, members.y, 0, epochs=15)
    return TorchTarget(module, "cnn", digits.input_shape, digits.n_classes,
                       digits.clip_values, trainer=lambda x, y, s: train_cnn(x, y, s, 5))
