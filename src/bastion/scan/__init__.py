"""Model file scanning: find code hidden in serialized models without loading them.

One module per format; :data:`MODEL_ANALYZERS` lists them in dispatch order (specific
formats before generic containers). :func:`scan_path` is the library entry point.
"""

from __future__ import annotations

from pathlib import Path

from bastion.analyzer import Analyzer, Registry
from bastion.findings import Report
from bastion.policy import DEFAULT, Policy
from bastion.rules import Rule
from bastion.scan import archive, gguf, keras, numpy, onnx, safetensors, savedmodel, torch
from bastion.scan.pickle import RULES as PICKLE_RULES
from bastion.scan.pickle import PickleAnalyzer

MODEL_ANALYZERS: tuple[Analyzer, ...] = (
    torch.TorchZipAnalyzer(),
    torch.TorchLegacyAnalyzer(),
    torch.TorchTarAnalyzer(),
    keras.KerasAnalyzer(),
    numpy.NumpyAnalyzer(),
    safetensors.SafetensorsAnalyzer(),
    gguf.GgufAnalyzer(),
    savedmodel.SavedModelAnalyzer(),
    onnx.OnnxAnalyzer(),  # after other protobuf formats: it claims by the first fields
    PickleAnalyzer(),
    archive.ArchiveAnalyzer(),  # last: the fallback for containers nobody else claims
)
MODEL_RULES: tuple[Rule, ...] = (
    *PICKLE_RULES, *torch.RULES, *numpy.RULES, *safetensors.RULES, *gguf.RULES, *onnx.RULES,
    *keras.RULES, *savedmodel.RULES, *archive.RULES,
)


def scan_path(*paths: str | Path, policy: Policy = DEFAULT) -> Report:
    """Scan model files and folders (model analyzers only); see :func:`bastion.scan_paths`."""
    from bastion.engine import scan_paths

    return scan_paths(paths, policy, registry=Registry(MODEL_ANALYZERS))


__all__ = ["MODEL_ANALYZERS", "MODEL_RULES", "scan_path"]
