"""Targets: every query counted, budgets enforced, model files loaded only through safe doors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from bastion.assess.data import EvalData
from bastion.assess.extraction import assess_extraction
from bastion.assess.targets import (
    BudgetExhausted,
    EndpointTarget,
    PredictorTarget,
    TorchTarget,
    load_target,
)
from bastion.errors import InputError

from .conftest import FAST


def test_answers_are_normalised_and_checked(digits: EvalData) -> None:
    def box(answer: object) -> PredictorTarget:
        return PredictorTarget(lambda x: answer, "box", (2,), 3, (0.0, 1.0))

    x = np.zeros((2, 2), dtype=np.float32)
    assert box(np.array([2, 0])).predict_proba(x).tolist() == [[0, 0, 1], [1, 0, 0]]
    logits = box(np.array([[0.0, 0.0, np.log(2.0)], [5.0, 0.0, 0.0]])).predict_proba(x)
    assert np.allclose(logits.sum(1), 1.0)
    assert logits[0, 2] == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"answered shape \(2, 4\)"):
        box(np.zeros((2, 4))).predict_proba(x)
    with pytest.raises(InputError, match="labels of shape"):
        box(np.array([0, 7])).predict_proba(x)
    with pytest.raises(InputError, match="NaN or infinite"):
        box(np.full((2, 3), np.nan)).predict_proba(x)


def test_endpoint_counts_queries_and_stops_at_its_budget(logistic, digits: EvalData) -> None:  # type: ignore[no-untyped-def]
    model = logistic.estimator
    sent: list[int] = []

    def send(x: np.ndarray) -> np.ndarray:  # stands in for the gateway's HTTP client
        sent.append(len(x))
        return model.predict(x.reshape(len(x), -1))  # labels only, as a hardened endpoint

    endpoint = EndpointTarget("https://gateway.example/v1/models/digits", "secret-key",
                              digits.input_shape, digits.n_classes, digits.clip_values,
                              send=send, labels_only=True, budget=700)
    assert not endpoint.white_box
    assert "secret-key" not in repr(endpoint)
    result = assess_extraction(endpoint, digits, FAST)
    assert endpoint.queries == sum(sent) <= 700
    assert [p.queries for p in result.points] == [50, 100, 200]
    assert "query budget exhausted" in result.errors[0]
    with pytest.raises(BudgetExhausted):
        endpoint.predict(digits.holdout.x[:100])  # 649 spent: 100 more would pass 700
    offline = EndpointTarget("https://gateway.example/m", None, (4,), 2, (0.0, 1.0))
    with pytest.raises(InputError, match="needs a transport"):
        offline.predict(np.zeros((1, 4), dtype=np.float32))


@pytest.mark.torch
def test_torch_files_load_through_the_gateways_loaders(tmp_path: Path, cnn: TorchTarget,
                                                       digits: EvalData) -> None:
    import torch
    from safetensors.torch import save_file

    x = digits.holdout.x[:50]
    script = tmp_path / "cnn.pt"
    torch.jit.script(cnn.module).save(str(script))
    target = load_target(script, digits)
    assert isinstance(target, TorchTarget)
    assert target.white_box
    assert not target.outputs_probabilities  # logits, told apart from the outputs
    assert np.array_equal(target.predict(x), cnn.predict(x))
    weights = tmp_path / "cnn.safetensors"
    save_file(cnn.module.state_dict(), str(weights))
    rebuilt = load_target(weights, digits, factory="bastion.assess.demo:digits_cnn")
    assert isinstance(rebuilt, TorchTarget)
    assert np.array_equal(rebuilt.predict(x), cnn.predict(x))
    with pytest.raises(InputError, match="pass --factory"):
        load_target(weights, digits)
    checkpoint = tmp_path / "weights.pt"
    torch.save(cnn.module.state_dict(), checkpoint)
    with pytest.raises(InputError, match="no architecture to rebuild safely"):
        load_target(checkpoint, digits)


@pytest.mark.torch
def test_onnx_models_are_black_boxes(tmp_path: Path, cnn: TorchTarget,
                                     digits: EvalData) -> None:
    import torch

    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(cnn.module, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    target = load_target(path, digits)
    assert not target.white_box
    x = digits.holdout.x[:50]
    assert np.array_equal(target.predict(x), cnn.predict(x))
    assert target.queries == 50


def test_unknown_files_are_refused(tmp_path: Path, digits: EvalData) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="not a model format"):
        load_target(path, digits)
    with pytest.raises(InputError, match="no such file"):
        load_target(tmp_path / "missing.onnx", digits)
