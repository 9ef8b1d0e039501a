"""What ships enabled: the default analyzers, in dispatch order, and the rule catalogue.

This is the one place that lists them; nothing registers itself at import time.
"""

from __future__ import annotations

from bastion.analyzer import Analyzer
from bastion.rules import CORE_RULES, Rule


def default_analyzers() -> tuple[Analyzer, ...]:
    """Specific formats before generic containers: the first claimant of a capability wins."""
    from bastion.scan import MODEL_ANALYZERS
    from bastion.supply.analyzer import SupplyAnalyzer

    return (*MODEL_ANALYZERS, SupplyAnalyzer())


def all_rules() -> tuple[Rule, ...]:
    """Every rule Bastion can raise, core rules first, each id once."""
    from bastion.scan import MODEL_RULES
    from bastion.supply.rules import RULES as SUPPLY_RULES

    seen: dict[str, Rule] = {}
    for rule in (*CORE_RULES, *MODEL_RULES, *SUPPLY_RULES):
        seen.setdefault(rule.id, rule)
    return tuple(seen.values())


def rule_ids() -> frozenset[str]:
    return frozenset(rule.id for rule in all_rules())
