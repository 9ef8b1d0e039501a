"""Model file scanning: find code hidden in serialized models without loading them.

One module per format; :data:`MODEL_ANALYZERS` lists them in dispatch order (specific
formats before generic containers), each behind a cheap pre-filter (:mod:`bastion.scan.sniff`)
so a format's parser is imported only when a file might be in that format.
:func:`scan_path` is the library entry point.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.analyzer import LazyAnalyzer, Registry
from bastion.policy import DEFAULT, Policy
from bastion.scan import sniff

if TYPE_CHECKING:
    from bastion.findings import Report
    from bastion.rules import Rule


def _lazy(spec: str, name: str, prefilter: Any) -> LazyAnalyzer:
    return LazyAnalyzer(f"bastion.scan.{spec}", name, "model", prefilter)


MODEL_ANALYZERS: tuple[LazyAnalyzer, ...] = (
    _lazy("torch:TorchZipAnalyzer", "torch-zip", sniff.zip_file),
    _lazy("torch:TorchLegacyAnalyzer", "torch-legacy", sniff.torch_legacy),
    _lazy("torch:TorchTarAnalyzer", "torch-tar", sniff.tar_file),
    _lazy("keras:KerasAnalyzer", "keras", sniff.keras),
    _lazy("numpy:NumpyAnalyzer", "numpy", sniff.numpy),
    _lazy("safetensors:SafetensorsAnalyzer", "safetensors", sniff.safetensors),
    _lazy("gguf:GgufAnalyzer", "gguf", sniff.gguf),
    _lazy("savedmodel:SavedModelAnalyzer", "savedmodel", sniff.protobuf),
    # after other protobuf formats: ONNX claims by the first fields
    _lazy("onnx:OnnxAnalyzer", "onnx", sniff.protobuf),
    _lazy("pickle:PickleAnalyzer", "pickle", sniff.pickle),
    # last: the fallback for containers nobody else claims
    _lazy("archive:ArchiveAnalyzer", "archive", sniff.archive),
)


def model_rules() -> tuple[Rule, ...]:
    """Every rule of the model formats (imports every format module)."""
    seen: dict[str, Rule] = {}
    for analyzer in MODEL_ANALYZERS:
        for rule in analyzer.rules:
            seen.setdefault(rule.id, rule)
    return tuple(seen.values())


def __getattr__(name: str) -> Any:
    if name == "MODEL_RULES":  # kept for callers of the eager days
        return model_rules()
    raise AttributeError(f"module 'bastion.scan' has no attribute {name!r}")


def scan_path(*paths: str | Path, policy: Policy = DEFAULT) -> Report:
    """Scan model files and folders (model analyzers only); see :func:`bastion.scan_paths`."""
    from bastion.engine import scan_paths

    return scan_paths(paths, policy, registry=Registry(MODEL_ANALYZERS))


__all__ = ["MODEL_ANALYZERS", "MODEL_RULES", "model_rules", "scan_path"]
