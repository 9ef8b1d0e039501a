"""Admission: the real scanner gates the registry, signatures are verified when the policy
says so, and a file changed on disk after admission is refused by ``verify_content``."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from tests.gateway.conftest import SCHEMA, Malicious, write_onnx

from bastion.errors import UsageError
from bastion.findings import Severity
from bastion.gateway import registry
from bastion.gateway.errors import AdmissionRefused, ModelIntegrityError, NotFound
from bastion.policy import DEFAULT, Policy, Sign
from bastion.sign.interface import sign_model
from bastion.sign.keys import write_keypair


def _admit(engine: Engine, name: str, path: Path, **kwargs: object) -> registry.ModelRecord:
    options: dict[str, object] = {"loader": "onnx", "input_schema": SCHEMA, **kwargs}
    return registry.admit(engine, name, path, **options)  # type: ignore[arg-type]


def test_clean_models_are_admitted_and_versioned(engine: Engine, onnx_model: Path,
                                                 skops_model: Path) -> None:
    first = _admit(engine, "iris", onnx_model)
    assert first.version == "1"
    assert first.status == registry.ADMITTED
    assert first.digest == "sha256:" + hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    assert first.path == str(onnx_model.resolve())
    assert first.input_schema == SCHEMA
    assert first.scan_summary["clean"] is True
    assert first.scan_clean
    assert first.scan_summary["counts"] == {}
    assert first.signer is None
    assert first.admitted_at.tzinfo is not None

    second = registry.admit(engine, "iris", skops_model, loader="sklearn", input_schema=SCHEMA)
    assert second.version == "2"
    assert registry.get(engine, "iris") == second  # the latest admitted version
    assert registry.get(engine, "iris", "1") == first  # read back exactly as recorded
    named = _admit(engine, "iris", onnx_model, version="2024-06.1")
    assert named.version == "2024-06.1"
    assert _admit(engine, "iris", onnx_model).version == "3"  # numbers continue
    assert [r.version for r in registry.list_models(engine, "iris")] == \
        ["1", "2", "2024-06.1", "3"]
    with pytest.raises(AdmissionRefused, match="already in the registry"):
        _admit(engine, "iris", onnx_model, version="1")
    with pytest.raises(NotFound):
        registry.get(engine, "nope")


def test_malicious_pickle_is_refused_and_never_loaded(engine: Engine,
                                                      malicious_pickle: Malicious) -> None:
    with pytest.raises(AdmissionRefused) as refused:
        registry.admit(engine, "evil", malicious_pickle.path, loader="sklearn",
                       input_schema=SCHEMA)
    message = str(refused.value)
    assert "admission refused" in message
    assert "PICKLE-" in message
    assert "critical" in message
    report = refused.value.report
    assert report is not None
    assert not report.passed
    assert any(f.severity is Severity.CRITICAL for f in report.failing)
    assert registry.list_models(engine) == []


def test_pickle_must_scan_clean_even_below_the_threshold(engine: Engine,
                                                         tmp_path: Path) -> None:
    # An unknown import is a medium finding: under fail-on=high a scan passes, but loading
    # a pickle runs what it names, so the registry wants a clean scan.
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x02cmypkg.models\nThing\n)\x81.")
    lenient = DEFAULT.with_overrides(fail_on=Severity.HIGH)
    with pytest.raises(AdmissionRefused, match="pickle-based"):
        registry.admit(engine, "m", path, loader="sklearn", input_schema=SCHEMA,
                       policy=lenient)


def test_policy_excludes_do_not_hide_files_from_admission(
        engine: Engine, model_folder: Path, malicious_pickle: Malicious) -> None:
    shutil.copy(malicious_pickle.path, model_folder / "extra.pkl")
    policy = Policy(exclude=("**/*.pkl",))
    with pytest.raises(AdmissionRefused, match="PICKLE-"):
        _admit(engine, "m", model_folder, policy=policy)


def _signing_policy(tmp_path: Path) -> tuple[Path, Policy]:
    private, public, _ = write_keypair(tmp_path / "release.key", "ecdsa-p256")
    return private, Policy(sign=Sign(keys=(str(public),)))


def test_signature_required_by_the_policy(engine: Engine, model_folder: Path,
                                          tmp_path: Path) -> None:
    private, policy = _signing_policy(tmp_path)
    with pytest.raises(AdmissionRefused, match="requires a signature"):
        _admit(engine, "signed", model_folder, policy=policy)

    sign_model(model_folder, private)
    record = _admit(engine, "signed", model_folder, policy=policy)
    assert record.signer is not None
    assert "ECDSA" in record.signer
    registry.verify_content(record)

    (model_folder / "config.json").write_text('{"labels": ["b", "a"]}\n', encoding="utf-8")
    with pytest.raises(AdmissionRefused, match=r"SIGN-FILE-MODIFIED .*config\.json"):
        _admit(engine, "signed", model_folder, policy=policy)

    other, _, _ = write_keypair(tmp_path / "other.key", "ecdsa-p256")
    sign_model(model_folder, other)  # re-signed, but by a key the policy does not trust
    with pytest.raises(AdmissionRefused, match="SIGN-WRONG-KEY"):
        _admit(engine, "signed", model_folder, policy=policy)
    assert [r.version for r in registry.list_models(engine, "signed")] == ["1"]


def test_signed_single_file(engine: Engine, onnx_model: Path, tmp_path: Path) -> None:
    private, policy = _signing_policy(tmp_path)
    policy = Policy(sign=Sign(require=("**/*.onnx",), keys=policy.sign.keys))
    with pytest.raises(AdmissionRefused, match="requires a signature"):
        _admit(engine, "one", onnx_model, policy=policy)
    sign_model(onnx_model, private)  # FILE.sig beside it: not part of the scan
    assert _admit(engine, "one", onnx_model, policy=policy).signer
    write_onnx(onnx_model, seed=3)
    with pytest.raises(AdmissionRefused, match="does not verify") as refused:
        _admit(engine, "one", onnx_model, policy=policy)
    assert "SIGN-FILE-MODIFIED" in str(refused.value)
    (tmp_path / "sigs").mkdir()
    signature = tmp_path / "sigs" / "elsewhere.sig"
    sign_model(onnx_model, private, output=signature)
    assert _admit(engine, "one", onnx_model, policy=policy, signature=signature).signer


def test_swapped_files_are_detected(engine: Engine, model_folder: Path,
                                    onnx_model: Path) -> None:
    record = _admit(engine, "folder", model_folder)
    assert {f[0] for f in record.files} == {"config.json", "model.onnx", "tokenizer/vocab.txt"}
    registry.verify_content(record)

    write_onnx(model_folder / "model.onnx", seed=1)  # same size, other weights
    with pytest.raises(ModelIntegrityError,
                       match=r"model\.onnx changed since admission of folder@1: sha256 "):
        registry.verify_content(record)
    write_onnx(model_folder / "model.onnx", seed=0)
    registry.verify_content(record)  # back as admitted

    (model_folder / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(ModelIntegrityError, match=r"tokenizer/vocab\.txt is missing"):
        registry.verify_content(record)
    (model_folder / "tokenizer" / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    (model_folder / "payload.py").write_text("print('hi')\n", encoding="utf-8")
    with pytest.raises(ModelIntegrityError, match=r"payload\.py was added"):
        registry.verify_content(record)

    single = _admit(engine, "single", onnx_model)
    onnx_model.write_bytes(onnx_model.read_bytes() + b"\0")
    with pytest.raises(ModelIntegrityError, match=rf"{onnx_model.name} changed since"):
        registry.verify_content(single)
    onnx_model.unlink()
    with pytest.raises(ModelIntegrityError, match="cannot read"):
        registry.verify_content(single)


def test_retired_versions_are_not_served(engine: Engine, onnx_model: Path) -> None:
    _admit(engine, "m", onnx_model)
    _admit(engine, "m", onnx_model)
    retired = registry.retire(engine, "m", "2")
    assert retired.status == registry.RETIRED
    assert retired.retired_at is not None
    assert registry.get(engine, "m").version == "1"
    with pytest.raises(NotFound, match="retired"):
        registry.get(engine, "m", "2")
    assert registry.get(engine, "m", "2", include_retired=True).status == registry.RETIRED
    assert registry.retire(engine, "m", "2").retired_at == retired.retired_at  # idempotent
    assert [r.version for r in registry.list_models(engine, include_retired=False)] == ["1"]
    with pytest.raises(NotFound):
        registry.retire(engine, "m", "9")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "bad name"}, "model name"),
    ({"name": "x" * 200}, "longer than"),
    ({"version": "../1"}, "version"),
    ({"loader": "pickle"}, "unknown loader"),
    ({"loader": "torch"}, "needs a factory"),
    ({"loader": "callable", "factory": "os.system; rm"}, "factory"),
    ({"input_schema": {"shape": [None, 0], "dtype": "float32"}}, "dimension"),
    ({"input_schema": {"shape": [], "dtype": "float32"}}, "shape"),
    ({"input_schema": {"shape": [None, 4], "dtype": "object"}}, "dtype"),
    ({"input_schema": {"shape": [None, 4], "dtype": "float32", "min": float("nan")}},
     "finite"),
    ({"input_schema": {"shape": [None, 4], "dtype": "float32", "min": 2, "max": 1}},
     "greater than max"),
    ({"input_schema": {"shape": [None, 4], "dtype": "float32", "evil": True}}, "evil"),
    ({"input_schema": "float32"}, "JSON object"),
])
def test_invalid_admissions_say_why(engine: Engine, onnx_model: Path,
                                    kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"name": "m", "loader": "onnx", "input_schema": SCHEMA,
                                  **kwargs}
    name = options.pop("name")
    with pytest.raises(UsageError, match=message):
        registry.admit(engine, name, onnx_model, **options)  # type: ignore[arg-type]
    assert registry.list_models(engine) == []


def test_unsafe_or_unbounded_folders_are_refused(engine: Engine, model_folder: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="path not found"):
        _admit(engine, "m", tmp_path / "missing")
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the model\n", encoding="utf-8")
    os.symlink(outside, model_folder / "link.txt")
    with pytest.raises(AdmissionRefused, match="leads outside"):
        _admit(engine, "m", model_folder)
    (model_folder / "link.txt").unlink()
    monkeypatch.setattr(registry, "MAX_FILES", 2)
    with pytest.raises(AdmissionRefused, match="more than 2 files"):
        _admit(engine, "m", model_folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdmissionRefused, match="holds no files"):
        _admit(engine, "m", empty)
