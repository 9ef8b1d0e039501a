"""Bastion: security for the machine-learning lifecycle.

The library API mirrors the CLI: :func:`bastion.scan_paths` is ``bastion scan``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Report, Severity
from bastion.policy import Policy, load_policy

__all__ = ["Finding", "Location", "Policy", "Report", "Severity", "__version__", "load_policy",
           "scan_paths"]
