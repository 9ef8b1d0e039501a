"""Attack speed: Bastion's assessment against ART called directly, torchattacks and a plain loop.

    .venv/bin/python benchmarks/assess/bench.py [--repeat 5] [--threads 1] [--out FILE]

PGD (L∞, ε = 0.1 of the [0, 1] range, 20 steps of 2.5·ε/20, no random start, true labels) on
a batch of 500 digits held out from training, against the demo's small CNN (``bastion.assess.
demo.train_cnn``, 40 epochs, seed 0), on the CPU. Each figure is the best of ``--repeat``
timed runs after one warm-up run (the machine is shared: the minimum is the least disturbed
measurement); robust accuracy is the share of the 500 adversarial examples still classified
correctly, so attacks of the same strength show the same figure.

- plain loop (``autograd.grad``): the textbook batched loop, as torchattacks writes it;
- plain loop (``backward``): the same with ``loss.backward()``, which also fills the
  weights' ``.grad`` — what ART's PyTorch PGD does on every step;
- Bastion: ``bastion.assess.robustness.torch_pgd`` (the parameters' ``requires_grad`` off,
  gradients with respect to the input only), what ``bastion assess`` runs for torch models;
- ART: ``ProjectedGradientDescent`` on ``PyTorchClassifier``, called directly;
- torchattacks 3.5.1 ``PGD`` when importable (``--torchattacks DIR``: it is not a dependency;
  install it apart with ``pip install --no-deps --target DIR torchattacks`` so it cannot pull
  a CUDA torch).

Then the ART-backed paths, where Bastion's wrapper must cost at most ~10%: PGD on a
scikit-learn logistic regression (Bastion's flatten-and-call wrapper against ART's
``ProjectedGradientDescent`` on ``SklearnClassifier``), and one shadow-model membership
inference run on an unregularised random forest (Bastion's ``privacy._shadow_attack``
against ART's ``ShadowModels`` + ``MembershipInferenceBlackBox`` with the same settings).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

warnings.simplefilter("ignore")

HERE = Path(__file__).resolve().parent
BATCH = 500
EPS = 0.1
STEPS = 20


def best_of(methods: list[tuple[str, Callable[[], Any]]], repeat: int) -> list[
        tuple[str, float, Any]]:
    """Each method's fastest run. The methods take turns (round-robin), so a burst of load
    from elsewhere on the machine hits them alike; one warm-up round first."""
    results: dict[str, Any] = {name: fn() for name, fn in methods}  # warm-up
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _ in range(repeat):
        for name, fn in methods:
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return [(name, min(times[name]), results[name]) for name, _ in methods]


def plain_grad(module: Any, x: Any, y: Any, eps: float, step: float, steps: int) -> Any:
    import torch
    import torch.nn.functional as F

    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(module(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = torch.clamp(torch.min(torch.max(adv, x - eps), x + eps), 0, 1)
    return adv


def plain_backward(module: Any, x: Any, y: Any, eps: float, step: float, steps: int) -> Any:
    import torch
    import torch.nn.functional as F

    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        module.zero_grad()
        F.cross_entropy(module(adv), y).backward()
        adv = adv.detach() + step * adv.grad.sign()
        adv = torch.clamp(torch.min(torch.max(adv, x - eps), x + eps), 0, 1)
    return adv


def pgd_rows(repeat: int, torchattacks_dir: str | None) -> tuple[list[list[str]], list[str]]:
    import torch
    from art.attacks.evasion import ProjectedGradientDescent

    from bastion.assess.data import demo_data
    from bastion.assess.demo import train_cnn
    from bastion.assess.robustness import torch_pgd
    from bastion.assess.targets import TorchTarget

    data = demo_data("digits", 0)
    assert data.members is not None
    module = train_cnn(data.members.x, data.members.y, 0)
    target = TorchTarget(module, "cnn", data.input_shape, data.n_classes, data.clip_values)
    x, y = data.holdout.x[:BATCH], data.holdout.y[:BATCH]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    step = 2.5 * EPS / STEPS
    clean = float((target.predict(x) == y).mean())

    def acc(adv: Any) -> float:
        array = adv.detach().numpy() if hasattr(adv, "detach") else np.asarray(adv)
        return float((target.predict(array.astype(np.float32)) == y).mean())

    art_classifier = target.art_whitebox()
    art_attack = ProjectedGradientDescent(art_classifier, norm=np.inf, eps=EPS, eps_step=step,
                                          max_iter=STEPS, num_random_init=0, batch_size=BATCH,
                                          verbose=False)
    one_hot = np.eye(data.n_classes, dtype=np.float32)[y]
    methods: list[tuple[str, Callable[[], Any]]] = [
        ("plain PyTorch loop, autograd.grad (the limit)",
         lambda: plain_grad(module, xt, yt, EPS, step, STEPS)),
        ("plain PyTorch loop, loss.backward()",
         lambda: plain_backward(module, xt, yt, EPS, step, STEPS)),
        ("Bastion (`torch_pgd`, what `bastion assess` runs)",
         lambda: torch_pgd(target, x, y, EPS, step, STEPS, batch=BATCH)),
        ("ART 1.20.1 ProjectedGradientDescent (PyTorchClassifier), direct",
         lambda: art_attack.generate(x, y=one_hot)),
    ]
    notes = []
    if torchattacks_dir:
        sys.path.insert(0, torchattacks_dir)
    try:
        import torchattacks

        atk = torchattacks.PGD(module, eps=EPS, alpha=step, steps=STEPS, random_start=False)
        methods.append((f"torchattacks {torchattacks.__version__} PGD",
                        lambda: atk(xt, yt)))
    except ImportError:
        notes.append("torchattacks is not importable (pass --torchattacks DIR); not measured")
    rows, baseline = [], None
    for name, seconds, adv in best_of(methods, repeat):
        baseline = baseline or seconds
        rows.append([name, f"{seconds * 1000 / BATCH:.3f}", f"{seconds / baseline:.2f}×",
                     f"{acc(adv) * 100:.1f}%"])
    notes.append(f"clean accuracy of the CNN on the batch: {clean * 100:.1f}%")
    return rows, notes


def sklearn_pgd_rows(repeat: int) -> list[list[str]]:
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    from bastion.assess.data import demo_data
    from bastion.assess.robustness import _whitebox
    from bastion.assess.targets import SklearnTarget

    data = demo_data("digits", 0)
    assert data.members is not None
    flat = data.members.x.reshape(data.members.n_samples, -1)
    model = LogisticRegression(max_iter=1000).fit(flat, data.members.y)
    target = SklearnTarget(model, "lr", data.input_shape, data.n_classes, data.clip_values)
    engine = _whitebox(target)
    assert engine is not None
    _, _, pgd = engine
    x, y = data.holdout.x[:BATCH], data.holdout.y[:BATCH]
    step = 2.5 * EPS / STEPS
    art = ProjectedGradientDescent(SklearnClassifier(model, clip_values=(0.0, 1.0)),
                                   norm=np.inf, eps=EPS, eps_step=step, max_iter=STEPS,
                                   num_random_init=0, batch_size=BATCH, verbose=False)
    one_hot = np.eye(10, dtype=np.float32)[y]
    rows = []
    baseline = None
    for name, seconds, adv in best_of([
        ("ART ProjectedGradientDescent (SklearnClassifier), direct",
         lambda: art.generate(x.reshape(BATCH, -1), y=one_hot)),
        ("Bastion (ART through the assessment's wrapper)",
         lambda: pgd(x, y, EPS, step, STEPS)),
    ], repeat):
        baseline = baseline or seconds
        robust = float((model.predict(np.asarray(adv).reshape(BATCH, -1)) == y).mean())
        rows.append([name, f"{seconds * 1000 / BATCH:.3f}", f"{seconds / baseline:.2f}×",
                     f"{robust * 100:.1f}%"])
    return rows


def mia_rows(repeat: int) -> list[list[str]]:
    from art.attacks.inference.membership_inference import (
        MembershipInferenceBlackBox,
        ShadowModels,
    )
    from art.estimators.classification import BlackBoxClassifier, SklearnClassifier
    from sklearn.ensemble import RandomForestClassifier

    from bastion.assess.data import demo_data
    from bastion.assess.privacy import _shadow_attack, roc_metrics
    from bastion.assess.targets import SklearnTarget

    data = demo_data("digits", 0)
    members = data.members
    assert members is not None
    flat = members.x.reshape(members.n_samples, -1)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(flat, members.y)
    target = SklearnTarget(forest, "rf", data.input_shape, data.n_classes, data.clip_values)
    shadow_data, nonmembers = data.holdout.split(0.5, 0)
    nonmembers = nonmembers.take(449, 0)
    inside = members.take(449, 1)
    member_pred = target.predict_proba(inside.x)
    nonmember_pred = target.predict_proba(nonmembers.x)

    def bastion() -> tuple[Any, Any]:
        return _shadow_attack(target, target.shadow(0), shadow_data, inside, nonmembers,
                              member_pred, nonmember_pred, 0)

    # ART's SklearnClassifier learns the class count from a fitted model; its clones for
    # the shadows are refitted from scratch (outside the timing: Bastion needs no such fit)
    template = SklearnClassifier(RandomForestClassifier(n_estimators=100, random_state=0).fit(
        shadow_data.x.reshape(shadow_data.n_samples, -1), shadow_data.y))

    def art_direct() -> tuple[Any, Any]:
        shadows = ShadowModels(template, num_shadow_models=3, random_state=0)
        (_, in_y, in_pred), (_, out_y, out_pred) = shadows.generate_shadow_dataset(
            shadow_data.x.reshape(shadow_data.n_samples, -1), np.eye(10)[shadow_data.y])
        box = BlackBoxClassifier(lambda z: forest.predict_proba(z), (64,), 10)
        attack = MembershipInferenceBlackBox(box, input_type="prediction",
                                             attack_model_type="rf")
        attack.attack_model = RandomForestClassifier(n_estimators=100, random_state=0)
        attack.fit(y=in_y, test_y=out_y, pred=in_pred, test_pred=out_pred)
        return (attack.infer(None, inside.y, pred=member_pred, probabilities=True)[:, -1],
                attack.infer(None, nonmembers.y, pred=nonmember_pred, probabilities=True)[:, -1])

    rows = []
    baseline = None
    for name, seconds, (a, b) in best_of([
            ("ART ShadowModels + MembershipInferenceBlackBox, direct", art_direct),
            ("Bastion (shadow-model attack of `bastion assess`)", bastion)], repeat):
        baseline = baseline or seconds
        auc = roc_metrics(np.asarray(a), np.asarray(b))[0]
        rows.append([name, f"{seconds:.2f}", f"{seconds / baseline:.2f}×", f"{auc:.3f}"])
    return rows


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--torchattacks", default=os.environ.get("TORCHATTACKS_DIR"))
    parser.add_argument("--sections", default="pgd,sklearn,mia",
                        help="comma-separated: pgd, sklearn, mia")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import art
    import sklearn
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads), ART "
              f"{art.__version__}, scikit-learn {sklearn.__version__}, NumPy {np.__version__}; "
              f"load average {load:.1f} at start; best of {args.repeat} runs")
    sections = set(args.sections.split(","))
    parts = [header]
    if "pgd" in sections:
        pgd, notes = pgd_rows(args.repeat, args.torchattacks)
        parts += [f"PGD on the digits CNN: batch {BATCH}, ε = {EPS}, {STEPS} steps",
                  table(["method", "ms / sample", "vs plain loop", "robust accuracy"], pgd),
                  "\n".join(f"- {n}" for n in notes)]
    if "sklearn" in sections:
        parts += [f"PGD on a logistic regression (ART-backed path): batch {BATCH}, "
                  f"ε = {EPS}, {STEPS} steps",
                  table(["method", "ms / sample", "vs ART", "robust accuracy"],
                        sklearn_pgd_rows(args.repeat))]
    if "mia" in sections:
        parts += ["Shadow-model membership inference on an unregularised random forest "
                  "(100 trees; 3 shadow models; 449 members vs 449 non-members)",
                  table(["method", "seconds / run", "vs ART", "AUC"], mia_rows(args.repeat))]
    text = "\n\n".join(parts) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
