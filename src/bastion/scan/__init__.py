"""Model file scanning: find code hidden in serialized models without loading them."""

from __future__ import annotations

from bastion.analyzer import Analyzer
from bastion.rules import Rule

MODEL_ANALYZERS: tuple[Analyzer, ...] = ()
MODEL_RULES: tuple[Rule, ...] = ()
