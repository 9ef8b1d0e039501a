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


#: What a principal, group or model name may be: it appears in grants, logs and URLs, so no
#: spaces, no control characters, no separators that would make ``user:``/``group:`` ambiguous
#: to read (``:`` is allowed inside, for ``oidc:<sub>`` names).
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:+")
_PRINCIPAL_CHARS = _NAME_CHARS | {"|"}
NAME_MAX = 128


def check_name(value: str, what: str, *, limit: int = NAME_MAX, principal: bool = False) -> str:
    """``value`` if it is a valid name (1-``limit`` of ``A-Z a-z 0-9 . _ - @ : +``, starting
    with a letter or digit), else a :class:`~bastion.errors.UsageError` saying why.

    ``principal=True`` also allows ``|``: identity providers put it in subjects
    (``auth0|5f7c...``), and a principal the gateway can authenticate must be grantable.
    Model names never hold it, so ``principal|model`` keys stay unambiguous."""
    from bastion.errors import UsageError

    allowed = _PRINCIPAL_CHARS if principal else _NAME_CHARS
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what}: a name is required")
    if len(value) > limit:
        raise UsageError(f"{what} {value[:40]!r}...: longer than {limit} characters")
    if not value[0].isascii() or not value[0].isalnum() or not set(value) <= allowed:
        extra = " |" if principal else ""
        raise UsageError(f"{what} {value!r}: use letters, digits and . _ - @ : +{extra} only, "
                         "starting with a letter or digit")
    return value
