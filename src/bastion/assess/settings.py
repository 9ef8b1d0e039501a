"""The ``[assess]`` table of the policy: thresholds and the size of each attack.

The policy keeps the table raw (:attr:`bastion.policy.Policy.assess`) so that ``bastion scan``
neither knows nor pays for its shape; it is validated here, when ``bastion assess`` runs, with
every problem named at once. Example::

    [assess]
    epsilons = [0.01, 0.02, 0.05, 0.1, 0.2]   # fractions of the input range (L-infinity)
    robustness-epsilon = 0.1                  # the budget the model must withstand...
    min-robust-accuracy = 0.5                 # ...keeping at least this accuracy
    max-membership-auc = 0.6
    max-membership-tpr = 0.05                 # true-positive rate at 1% false positives
    max-extraction-fidelity = 0.9             # copycat agreement reached within max-queries
    max-queries = 1000
    max-attribute-advantage = 0.1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bastion.errors import PolicyError, UsageError

#: Hard ceilings: a policy or an option cannot make one run unbounded.
MAX_EPSILONS = 16
MAX_QUERIES = 1_000_000
MAX_SAMPLES = 100_000
MAX_STEPS = 1_000


@dataclass(frozen=True, slots=True)
class AssessSettings:
    """What to measure and what is acceptable. Fractions are of the input range."""

    epsilons: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    robustness_epsilon: float = 0.1
    min_robust_accuracy: float = 0.5
    max_membership_auc: float = 0.6
    max_membership_tpr: float = 0.05
    max_extraction_fidelity: float = 0.9
    max_queries: int = 1000
    max_attribute_advantage: float = 0.1
    #: Samples attacked by the white-box attacks (a deterministic subset of the data).
    samples: int = 500
    #: Samples attacked by HopSkipJump, whose cost is thousands of queries per sample.
    blackbox_samples: int = 20
    pgd_steps: int = 20
    seed: int = 0
    #: Index of a categorical feature to attack with attribute inference (tabular data).
    sensitive_feature: int | None = None
    #: PyTorch intra-op threads while assessing (0: PyTorch's default, one per core). On a
    #: shared machine one thread is steadier: a busy core stalls every parallel step.
    threads: int = 0

    @property
    def sweep(self) -> tuple[float, ...]:
        """The epsilons to measure: the policy's sweep and its robustness budget, sorted."""
        return tuple(sorted({*self.epsilons, self.robustness_epsilon}))

    def with_overrides(self, **changes: Any) -> AssessSettings:
        """A copy with the options given on the command line (``None`` means not given)."""
        given = {k: v for k, v in changes.items() if v is not None}
        settings = dataclasses.replace(self, **given)
        problems = _check(settings)
        if problems:
            raise UsageError("invalid assessment option: " + "; ".join(problems))
        return settings


_FRACTIONS = ("robustness_epsilon", "min_robust_accuracy", "max_membership_auc",
              "max_membership_tpr", "max_extraction_fidelity", "max_attribute_advantage")
_INTS = {"max_queries": (10, MAX_QUERIES), "samples": (10, MAX_SAMPLES),
         "blackbox_samples": (0, 10_000), "pgd_steps": (1, MAX_STEPS), "seed": (0, 2**32 - 1),
         "sensitive_feature": (0, 10**7), "threads": (0, 1024)}


def _check(settings: AssessSettings) -> list[str]:
    """Every problem with a settings value, as ``key: what was expected``."""
    problems = []
    for name in _FRACTIONS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            problems.append(f"{_key(name)}: expected a number from 0 to 1 (got {value!r})")
    eps = settings.epsilons
    if (not isinstance(eps, tuple) or not 1 <= len(eps) <= MAX_EPSILONS
            or not all(isinstance(e, int | float) and not isinstance(e, bool) and 0 < e <= 1
                       for e in eps)):
        problems.append(f"epsilons: expected 1 to {MAX_EPSILONS} numbers in (0, 1] "
                        f"(got {eps!r})")
    if not settings.robustness_epsilon > 0:
        problems.append("robustness-epsilon: expected a number in (0, 1]")
    for name, (low, high) in _INTS.items():
        value = getattr(settings, name)
        if value is None and name == "sensitive_feature":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{_key(name)}: expected an integer from {low} to {high} "
                            f"(got {value!r})")
    return problems


def _key(name: str) -> str:
    return name.replace("_", "-")


def parse_settings(table: Mapping[str, Any], source: str = "<policy>") -> AssessSettings:
    """Validate the raw ``[assess]`` table; every problem is listed at once."""
    known = {_key(f.name): f.name for f in dataclasses.fields(AssessSettings)}
    values: dict[str, Any] = {}
    problems = []
    for key, value in table.items():
        name = known.get(key)
        if name is None:
            problems.append(f"assess.{key}: unknown key (keys are kebab-case, e.g. "
                            "'min-robust-accuracy')")
            continue
        if name == "epsilons":
            value = tuple(value) if isinstance(value, list) else value
        elif name in _FRACTIONS and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    if not problems:
        settings = AssessSettings(**values)
        problems = [f"assess.{p}" for p in _check(settings)]
    if problems:
        raise PolicyError("\n".join([f"{source}: invalid policy", *(f"  {p}" for p in problems)]))
    return settings


def parse_epsilons(text: str) -> tuple[float, ...]:
    """``"0.05,0.1,0.2"`` from the command line."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--epsilons: expected numbers separated by commas (got {text!r})") \
            from None
    if not values:
        raise UsageError("--epsilons: expected at least one number")
    return values
