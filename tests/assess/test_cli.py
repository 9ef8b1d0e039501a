"""``bastion assess`` for real: demos, model files, exit codes and one-line errors."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.assess.data import EvalData
from bastion.assess.targets import SklearnTarget

Cli = Callable[..., Any]

#: Small attacks, so a whole run takes seconds.
SMALL = """[assess]
samples = 100
blackbox-samples = 2
pgd-steps = 5
max-queries = 200
epsilons = [0.1, 0.2]
threads = 1
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    policy = tmp_path / "bastion.toml"
    policy.write_text(SMALL, encoding="utf-8")
    return policy


def _save_flat(path: Path, data: EvalData, members: bool = False) -> Path:
    part = data.members if members else data.holdout
    assert part is not None
    np.savez(path, x=part.x.reshape(part.n_samples, -1), y=part.y)
    return path


@pytest.mark.slow
def test_demo_writes_the_html_report(cli: Cli, tmp_path: Path, small: Path) -> None:
    report = tmp_path / "report.html"
    result = cli("assess", "--demo", "--format", "html", "-o", report, "--fail-on", "critical",
                 timeout=240)
    result.assert_clean()
    assert result.returncode == 0, result.output  # nothing critical in the demo
    page = report.read_text(encoding="utf-8")
    assert page.count("<svg") == 3
    assert "Bastion assessment" in page
    assert "demo:digits" in page
    assert "PASSED" in result.stderr


@pytest.mark.slow
def test_demo_fails_the_gate_on_a_strict_policy(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text(
        SMALL + "max-extraction-fidelity = 0.5\n", encoding="utf-8")
    result = cli("assess", "--demo", "breast-cancer", "-f", "json", timeout=240)
    result.assert_clean()
    assert result.returncode == 1, result.output
    data = result.json()
    rules = {f["rule_id"] for f in data["findings"]}
    assert "ASSESS-EXTRACTION-EASY" in rules
    assert "ASSESS-NOT-ASSESSED" in rules  # a random forest gives no gradients
    assert data["assessment"]["family"] == "scikit-learn RandomForestClassifier"
    assert data["assessment"]["queries"] > 0


def test_model_file_with_data_and_members(invoke: Cli, tmp_path: Path, small: Path,
                                          logistic: SklearnTarget, digits: EvalData) -> None:
    import joblib

    model = tmp_path / "model.joblib"
    joblib.dump(logistic.estimator, model)
    holdout = _save_flat(tmp_path / "eval.npz", digits)
    members = _save_flat(tmp_path / "train.npz", digits, members=True)
    out = tmp_path / "report.json"
    result = invoke("assess", model, "--data", holdout, "--members", members, "-f", "json",
                 "-o", out, "--epsilons", "0.2", "--seed", "3", "--fail-on", "critical")
    result.assert_clean()
    assert result.returncode == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))["assessment"]
    assert data["family"] == "scikit-learn LogisticRegression"
    assert data["settings"]["seed"] == 3
    assert data["settings"]["epsilons"] == [0.2]
    assert data["member_samples"] == 898
    assert data["input_shape"] == [64]
    assert {p["attack"] for p in data["robustness"]["points"]} == {"FGSM", "PGD-5",
                                                                   "HopSkipJump"}


@pytest.mark.parametrize(("args", "message"), [
    (("assess",), "give a model file and --data, or --demo"),
    (("assess", "m.joblib"), "--data is required"),
    (("assess", "--demo", "--data", "x.npz"), "--demo trains its own model"),
    (("assess", "--demo", "mnist"), "unknown demo 'mnist'"),
    (("assess", "--demo", "--epsilons", "0.1,x"), "--epsilons: expected numbers"),
    (("assess", "--demo", "--epsilons", "0.1,3"), "epsilons: expected 1 to 16 numbers"),
    (("assess", "--demo", "-f", "cyclonedx"), "--format cyclonedx is for SBOMs"),
])
def test_usage_errors_are_one_line(invoke: Cli, args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    result.assert_clean()
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_data_file_is_a_clear_error(invoke: Cli, tmp_path: Path,
                                        logistic: SklearnTarget) -> None:
    import joblib

    model = tmp_path / "model.joblib"
    joblib.dump(logistic.estimator, model)
    bad = tmp_path / "eval.npz"
    np.savez(bad, x=np.full((20, 64), np.nan), y=np.zeros(20))
    result = invoke("assess", model, "--data", bad)
    result.assert_clean()
    assert result.returncode == 2
    assert "NaN or infinite" in result.stderr


def test_data_that_does_not_fit_the_model(invoke: Cli, tmp_path: Path,
                                          logistic: SklearnTarget) -> None:
    import joblib

    model = tmp_path / "model.joblib"
    joblib.dump(logistic.estimator, model)
    narrow = tmp_path / "eval.npz"
    np.savez(narrow, x=np.random.default_rng(0).uniform(size=(20, 10)), y=np.arange(20) % 10)
    result = invoke("assess", model, "--data", narrow)
    result.assert_clean()
    assert result.returncode == 2
    assert "the model fails on the data's samples of shape (10,)" in result.stderr
    many = tmp_path / "many.npz"
    np.savez(many, x=np.random.default_rng(0).uniform(size=(20, 64)), y=np.arange(20) % 12)
    result = invoke("assess", model, "--data", many)
    assert result.returncode == 2
    assert "the model answers 10 classes, but the data has labels up to 11" in result.stderr


def test_a_model_that_fails_the_scan_is_never_loaded(invoke: Cli, tmp_path: Path,
                                                     digits: EvalData) -> None:
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (marker,))

    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(Payload()))
    data = _save_flat(tmp_path / "eval.npz", digits)
    result = invoke("assess", model, "--data", data)
    result.assert_clean()
    assert result.returncode == 2
    assert "refusing to load a model that fails `bastion scan`" in result.stderr
    assert not marker.exists()
