"""Per-request cost of the gateway's attack detectors, measured in-process.

The model is the one the live detection tests serve: a small CNN (PyTorch, TorchScript) trained
on half of scikit-learn's digits, loaded by the gateway's own ``torchscript`` loader. Each
row times what a request pays on top of the model's own answer, for one input and for a
batch of 64: ``ModelGuard.screen`` with only the extraction monitor on (PRADA over a principal
whose history already holds 1,000 queries, plus the volume count), with only feature
squeezing on (bit depth: one extra model call; bit depth and 2x2 median smoothing: two),
and both. One PyTorch thread, as a gateway worker runs it.

    .venv/bin/python benchmarks/gateway/detectors.py [--repeat 300]

Prints a Markdown table (median microseconds per request).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bastion.assess.data import demo_data
from bastion.assess.demo import train_cnn
from bastion.gateway.config import DetectorSettings
from bastion.gateway.detectors import MemoryFlags, ModelGuard
from bastion.gateway.loaders import load_predictor
from bastion.gateway.schema import InputSchema

SCHEMA = InputSchema(shape=[None, 1, 8, 8], dtype="float32", min=0, max=1, max_batch=64)


def median_us(fn: Callable[[int], object], repeat: int) -> float:
    for i in range(10):
        fn(i)
    times = []
    for i in range(repeat):
        began = time.perf_counter()
        fn(10 + i)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = demo_data("digits", 0)
    members = data.members
    assert members is not None
    module = train_cnn(members.x, members.y, 0, epochs=15)
    path = Path(tempfile.mkdtemp()) / "digits.pt"
    torch.jit.trace(module, torch.zeros(1, 1, 8, 8)).save(str(path))
    predictor = load_predictor("torchscript", path, input_schema=SCHEMA)
    pool = np.concatenate([data.holdout.x, members.x])
    # The detectors only watch here: nothing is flagged (delta near 0, no volume floor).
    configs = {
        "extraction (PRADA + volume)": DetectorSettings(extraction="alert", delta=0.01,
                                                        volume_floor=10**9),
        "feature squeezing, bits": DetectorSettings(adversarial="alert", squeeze_bits=2),
        "feature squeezing, bits + median": DetectorSettings(
            adversarial="alert", squeeze_bits=2, median_smoothing=True),
        "both (bits + median)": DetectorSettings(
            extraction="alert", delta=0.01, volume_floor=10**9, adversarial="alert",
            squeeze_bits=2, median_smoothing=True),
    }
    rows = []
    rng = np.random.default_rng(0)
    for batch in (1, 64):
        # every request new (noisy copies of the digits): no repeat takes the short path
        batches = [np.clip(pool[rng.choice(len(pool), batch, replace=False)]
                           + rng.normal(0, 0.02, (batch, 1, 8, 8)), 0, 1).astype(np.float32)
                   for _ in range(args.repeat + 10)]
        answers = [predictor.predict(x) for x in batches]
        model_us = median_us(lambda i, b=batches: predictor.predict(b[i]), args.repeat)
        rows.append((batch, "model alone", model_us, 0.0))
        for name, settings in configs.items():
            guard = ModelGuard("digits", settings, MemoryFlags())
            if guard.extraction is not None:  # a principal with a history
                for start in range(0, 1000, 50):
                    part = pool[start:start + 50]
                    guard.extraction.observe("p", part, predictor.predict(part).labels)
            cost = median_us(lambda i, g=guard, b=batches, a=answers: g.screen(
                "p", b[i], a[i], predictor, SCHEMA), args.repeat)
            rows.append((batch, name, cost, cost / model_us))
    print("| batch | detector | added per request (µs, median) | vs the model's own time |")
    print("|---:|---|---:|---:|")
    for batch, name, us, ratio in rows:
        print(f"| {batch} | {name} | {us:,.0f} | {ratio:.2f}x |" if ratio else
              f"| {batch} | {name} | {us:,.0f} (the model) | |")


if __name__ == "__main__":
    main()
