"""Malicious-package heuristics: static checks of sdists, wheels and installed packages.

Nothing is ever executed, imported or extracted: archives are read through Bastion's
bounded readers, Python files are parsed with :func:`ast.parse` and walked, constant
payloads are decoded without being run. Modules:

* :mod:`.sources` reads a package's files (sdist, wheel, installed ``RECORD``);
* :mod:`.resolve`, :mod:`.nodes` and :mod:`.python_ast` turn one Python file into signals
  per scope (:mod:`.interface`), matched against the API names of :mod:`.patterns`;
* :mod:`.verdicts` grades co-occurring signals into findings (exfiltration, download and
  execute, obfuscated exec); :mod:`.setup_py`, :mod:`.metadata`, :mod:`.pth` and
  :mod:`.binaries` cover install hooks, console scripts, ``.pth`` lines and binaries;
* :mod:`.typosquat` measures names against the shipped list of popular projects
  (:mod:`.popular`); :func:`typosquat_findings` is the hook for dependency inventories;
* :mod:`.analyzer` is the ``supply`` analyzer that ``bastion scan`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.supply.heuristics.rules import RULES

if TYPE_CHECKING:
    from bastion.supply.heuristics.analyzer import HeuristicsAnalyzer
    from bastion.supply.heuristics.typosquat import typosquat_findings


def __getattr__(name: str) -> Any:
    """The analyzer and the typosquat check load on first use (start-up stays light)."""
    if name == "HeuristicsAnalyzer":
        from bastion.supply.heuristics.analyzer import HeuristicsAnalyzer

        return HeuristicsAnalyzer
    if name == "typosquat_findings":
        from bastion.supply.heuristics.typosquat import typosquat_findings

        return typosquat_findings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["RULES", "HeuristicsAnalyzer", "typosquat_findings"]
