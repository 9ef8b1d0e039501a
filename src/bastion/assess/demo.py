"""The built-in demos: a model trained here on scikit-learn's bundled data, then assessed.

``digits`` trains a small CNN (PyTorch, when installed; a logistic regression otherwise) on
half of the 8×8 digit images; ``breast-cancer`` trains an unregularised random forest on half
of the 569 tabular records — the classic leaky model. Both run offline on a CPU in seconds,
deterministically for a seed, and the other half of the data is what the model never saw.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bastion.assess.data import EvalData, demo_data
from bastion.assess.targets import SklearnTarget, Target, TorchTarget, quietly

CNN_EPOCHS = 40


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def digits_cnn() -> Any:
    """Two 3×3 convolutions, a 2×2 pool and two dense layers: 99% clean accuracy on digits."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))


def train_cnn(x: NDArray[np.float32], y: NDArray[np.int64], seed: int,
              epochs: int = CNN_EPOCHS) -> Any:
    """Adam, batches of 64, no regularisation: it fits its training set perfectly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 64: threads cost more than they give (and the
    try:  # machine may be shared); restored afterwards
        return _train(x, y, seed, epochs)
    finally:
        torch.set_num_threads(threads)


def _train(x: NDArray[np.float32], y: NDArray[np.int64], seed: int, epochs: int) -> Any:
    import torch

    torch.manual_seed(seed)
    module = digits_cnn()
    optimizer = torch.optim.Adam(module.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss_fn(module(xt[batch]), yt[batch]).backward()
            optimizer.step()
    optimizer.zero_grad()  # the weights' gradients are not part of the model
    return module.eval()


def demo(name: str, seed: int = 0) -> tuple[Target, EvalData, str]:
    """The demo's target, its data and a one-line description of the model."""
    data = demo_data(name, seed)
    members = data.members
    assert members is not None
    args = (data.name, data.input_shape, data.n_classes, data.clip_values)
    if name == "digits" and torch_available():
        module = train_cnn(members.x, members.y, seed)
        target: Target = TorchTarget(module, *args, trainer=train_cnn)
        return target, data, f"a small CNN (PyTorch) trained {CNN_EPOCHS} epochs on " \
                             f"{members.n_samples} digit images"
    if name == "digits":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=1000, random_state=seed)
        quietly(model.fit, members.x.reshape(members.n_samples, -1), members.y)
        return SklearnTarget(model, *args), data, (
            f"a logistic regression trained on {members.n_samples} digit images (PyTorch is "
            "not installed, so no CNN)")
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=100, random_state=seed)
    quietly(forest.fit, members.x, members.y)
    return SklearnTarget(forest, *args), data, (
        f"an unregularised random forest (100 trees) trained on {members.n_samples} records")
