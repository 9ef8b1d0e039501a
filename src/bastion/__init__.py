"""Bastion: security for the machine-learning lifecycle.

The library API mirrors the CLI: :func:`bastion.scan_paths` is ``bastion scan``.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any

    from bastion.engine import scan_paths
    from bastion.findings import Finding, Location, Report, Severity
    from bastion.policy import Policy, load_policy

__all__ = ["Finding", "Location", "Policy", "Report", "Severity", "__version__", "load_policy",
           "scan_paths"]

_LAZY = {"scan_paths": "bastion.engine", "Finding": "bastion.findings",
         "Location": "bastion.findings", "Report": "bastion.findings",
         "Severity": "bastion.findings", "Policy": "bastion.policy",
         "load_policy": "bastion.policy"}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use: ``import bastion.cli`` stays light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
