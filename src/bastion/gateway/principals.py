"""Who is asking, and the permission levels a model can grant.

Black-box access (querying) and white-box access (the weights) are different rights: the
separation-of-duties policy forbids one principal holding both on the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    PREDICT = "predict"  # labels only
    SCORES = "scores"  # probabilities (rounded, optionally top-k)
    EXPLAIN = "explain"
    DOWNLOAD = "download"  # the weights: white-box
    ADMIN = "admin"  # grant, admit, retire


BLACK_BOX = frozenset({Permission.PREDICT, Permission.SCORES, Permission.EXPLAIN})
WHITE_BOX = frozenset({Permission.DOWNLOAD})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a name, the groups it belongs to and how it proved it."""

    name: str
    groups: frozenset[str] = frozenset()
    via: str = "key"  # "key" | "jwt"
    key_id: str | None = None
