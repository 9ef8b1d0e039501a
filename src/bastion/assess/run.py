"""One assessment: robustness, privacy and extraction on one target, in that order.

Each part is independent: one that fails is recorded (``errors``, reported as
``ASSESS-ATTACK-ERROR``) and the others still run. The figures come back as an
:class:`Assessment`, which :mod:`bastion.assess.report` turns into findings and documents.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bastion.assess.data import EvalData
from bastion.assess.extraction import ExtractionResult, assess_extraction
from bastion.assess.privacy import PrivacyResult, assess_privacy
from bastion.assess.robustness import RobustnessResult, assess_robustness
from bastion.assess.settings import AssessSettings
from bastion.assess.targets import EndpointTarget, Target


@dataclass(frozen=True, slots=True)
class EndpointUsage:
    """What assessing a live gateway cost, and whether the gateway stopped it."""

    answered: int  # inputs the gateway answered (the queries spent)
    refused: int  # inputs its detectors refused
    requests: int  # HTTP requests
    waited: float  # seconds spent honouring 429 Retry-After
    #: (code, answered before it, message) for the first refusal of each kind.
    refusals: tuple[tuple[str, int, str], ...] = ()

    @property
    def blocked_after(self) -> int | None:
        """Answered queries before the extraction detector blocked the assessment."""
        return next((n for code, n, _ in self.refusals if code == "blocked_extraction"), None)

    def to_dict(self) -> dict[str, Any]:
        return {"answered": self.answered, "refused": self.refused, "requests": self.requests,
                "waited_seconds": round(self.waited, 3),
                "refusals": [{"code": c, "after_answered": n, "message": m}
                             for c, n, m in self.refusals]}

    @classmethod
    def of(cls, target: Target) -> EndpointUsage | None:
        if not isinstance(target, EndpointTarget) or target.client is None:
            return None
        client = target.client
        return cls(int(client.answered), int(client.refused), int(client.requests),
                   float(client.waited),
                   tuple((r.code, r.answered, r.message) for r in target.refusals.values()))


@dataclass(frozen=True, slots=True)
class Assessment:
    target: str
    family: str
    description: str
    data: str
    kind: str
    n_classes: int
    input_shape: tuple[int, ...]
    clip_values: tuple[float, float]
    holdout_samples: int
    member_samples: int
    settings: AssessSettings
    robustness: RobustnessResult | None
    privacy: PrivacyResult | None
    extraction: ExtractionResult | None
    queries: int
    seconds: float
    errors: tuple[str, ...] = ()
    endpoint: EndpointUsage | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "family": self.family, "description": self.description,
            "data": self.data, "kind": self.kind, "n_classes": self.n_classes,
            "input_shape": list(self.input_shape), "clip_values": list(self.clip_values),
            "holdout_samples": self.holdout_samples, "member_samples": self.member_samples,
            "settings": {k.replace("_", "-"): (list(v) if isinstance(v, tuple) else v)
                         for k, v in dataclasses.asdict(self.settings).items()},
            "robustness": self.robustness.to_dict() if self.robustness else None,
            "privacy": self.privacy.to_dict() if self.privacy else None,
            "extraction": self.extraction.to_dict() if self.extraction else None,
            "queries": self.queries, "seconds": round(self.seconds, 3),
            "errors": list(self.errors),
            "endpoint": self.endpoint.to_dict() if self.endpoint else None,
        }


def run_assessment(target: Target, data: EvalData, settings: AssessSettings, *,
                   description: str = "",
                   progress: Callable[[str], None] | None = None) -> Assessment:
    """Run every part the target and data allow; a failing part does not stop the others."""
    began = time.perf_counter()
    errors: list[str] = []
    robustness: RobustnessResult | None = None
    privacy: PrivacyResult | None = None
    extraction: ExtractionResult | None = None
    with torch_threads(settings.threads):
        try:
            robustness = assess_robustness(target, data, settings, progress)
        except Exception as exc:
            errors.append(f"robustness: {type(exc).__name__}: {exc}")
        try:
            privacy = assess_privacy(target, data, settings, progress)
        except Exception as exc:
            errors.append(f"privacy: {type(exc).__name__}: {exc}")
        try:
            extraction = assess_extraction(target, data, settings, progress)
        except Exception as exc:
            errors.append(f"extraction: {type(exc).__name__}: {exc}")
    members = data.members.n_samples if data.members is not None else 0
    return Assessment(
        target=target.name, family=target.family, description=description, data=data.name,
        kind=data.kind, n_classes=data.n_classes, input_shape=data.input_shape,
        clip_values=data.clip_values, holdout_samples=data.holdout.n_samples,
        member_samples=members, settings=settings, robustness=robustness, privacy=privacy,
        extraction=extraction, queries=target.queries, seconds=time.perf_counter() - began,
        errors=tuple(errors), endpoint=EndpointUsage.of(target))


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op thread count for the duration, restored afterwards (only when
    PyTorch is already loaded: a scikit-learn assessment never imports it)."""
    if threads <= 0 or "torch" not in sys.modules:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
