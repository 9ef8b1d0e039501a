"""Who may do what with which model: grants, deny by default, separation of duties.

A grant gives one permission (:class:`~bastion.gateway.principals.Permission`) on one model,
or on every model (``*``), to a subject: ``user:NAME`` or ``group:NAME``. A principal's
permissions on a model are the union of the grants to its name and to each of its groups,
on that model and on ``*``; nothing granted means nothing allowed.

Separation of duties keeps black-box access (``predict``, ``scores``, ``explain``: querying)
and white-box access (``download``: the weights) apart, since holding both makes attacks
far easier (a local copy to craft adversarial examples against, then the live endpoint to
use them). With it on, :func:`grant` refuses a grant that would give one subject both on the
same model (a grant on ``*`` counts for every model). It checks the subject itself: a user
may still end up with both through two groups, which :func:`check` reports.

The request path asks :class:`AccessCache`, which keeps answers for about a second: a
revoked grant stops working within that time in every process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.engine import Engine

from bastion.db import exclusive, storage_errors
from bastion.errors import UsageError
from bastion.gateway.errors import NotFound, SeparationOfDutiesError
from bastion.gateway.principals import BLACK_BOX, WHITE_BOX, Permission, Principal, check_name
from bastion.gateway.tables import GrantRow

#: A grant on every model.
WILDCARD = "*"
#: Groups of one principal considered (a token naming thousands is cut, not trusted more).
MAX_GROUPS = 256
_KINDS = ("user:", "group:")
_LOCK = "bastion.grants"
_VALID = frozenset(p.value for p in Permission)


@dataclass(frozen=True, slots=True)
class Grant:
    subject: str
    model: str
    permission: Permission
    granted_at: datetime
    granted_by: str

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "model": self.model,
                "permission": self.permission.value, "granted_at": self.granted_at.isoformat(),
                "granted_by": self.granted_by}


def parse_subject(subject: str) -> str:
    """``user:NAME`` or ``group:NAME``; a bare name is a user."""
    if not isinstance(subject, str):
        raise UsageError("subject: expected user:NAME or group:NAME")
    for kind in _KINDS:
        if subject.startswith(kind):
            return kind + check_name(subject.removeprefix(kind), kind.rstrip(":"),
                                     principal=True)
    return "user:" + check_name(subject, "user", principal=True)


def parse_model(model: str) -> str:
    return WILDCARD if model == WILDCARD else check_name(model, "model")


def parse_permission(permission: str | Permission) -> Permission:
    try:
        return Permission(permission)
    except ValueError:
        names = ", ".join(p.value for p in Permission)
        raise UsageError(f"unknown permission {permission!r}: use one of {names}") from None


def subjects_of(principal: Principal) -> list[str]:
    """The subjects whose grants a principal holds: its user, then its groups."""
    groups = sorted(principal.groups)[:MAX_GROUPS]
    return [f"user:{principal.name}", *(f"group:{g}" for g in groups)]


def _conflict(held: Iterable[Permission]) -> tuple[Permission, Permission] | None:
    """A (black-box, white-box) pair in ``held``, if any."""
    have = set(held)
    black = sorted(have & BLACK_BOX)
    white = sorted(have & WHITE_BOX)
    return (black[0], white[0]) if black and white else None


def _held_by_model(conn: Connection, subject: str) -> dict[str, set[Permission]]:
    held: dict[str, set[Permission]] = {}
    for model, permission in conn.execute(select(GrantRow.model, GrantRow.permission)
                                          .where(GrantRow.subject == subject)):
        if permission in _VALID:
            held.setdefault(model, set()).add(Permission(permission))
    return held


def _check_duties(subject: str, model: str, permission: Permission,
                  held: dict[str, set[Permission]]) -> None:
    everywhere = held.get(WILDCARD, set())
    targets = held.keys() | {WILDCARD} if model == WILDCARD else {model}
    for target in sorted(targets):
        combined = held.get(target, set()) | everywhere | {permission}
        pair = _conflict(combined)
        if pair is None:
            continue
        black, white = pair
        where = "every model" if target == WILDCARD else f"model {target!r}"
        old = black if permission is white else white
        raise SeparationOfDutiesError(
            f"separation of duties: {subject} would hold both black-box ({black.value}) and "
            f"white-box ({white.value}) access to {where}; it already holds {old.value}"
            + ("" if target == model else f" on {target!r}")
            + ". Grant them to different principals, or turn separation of duties off")


def grant(engine: Engine, subject: str, model: str, permission: str | Permission, *,
          separation_of_duties: bool, granted_by: str = "cli",
          now: datetime | None = None) -> Grant:
    """Grant ``permission`` on ``model`` (or ``*``) to ``subject``; idempotent. With
    ``separation_of_duties``, raises :class:`SeparationOfDutiesError` when the subject
    would then hold black-box and white-box access to one model."""
    subject, model = parse_subject(subject), parse_model(model)
    perm = parse_permission(permission)
    with storage_errors(engine), exclusive(engine, _LOCK) as conn:
        held = _held_by_model(conn, subject)
        existing = conn.execute(select(GrantRow.granted_at, GrantRow.granted_by).where(
            GrantRow.subject == subject, GrantRow.model == model,
            GrantRow.permission == perm.value)).first()
        if existing is not None:
            return Grant(subject, model, perm, existing.granted_at, existing.granted_by)
        if separation_of_duties:
            _check_duties(subject, model, perm, held)
        made = Grant(subject, model, perm, now or datetime.now(UTC), granted_by[:128])
        conn.execute(insert(GrantRow).values(subject=subject, model=model,
                                             permission=perm.value, granted_at=made.granted_at,
                                             granted_by=made.granted_by))
    return made


def revoke_grant(engine: Engine, subject: str, model: str,
                 permission: str | Permission) -> Grant:
    """Remove one grant; :class:`NotFound` when there is no such grant."""
    subject, model = parse_subject(subject), parse_model(model)
    perm = parse_permission(permission)
    where = (GrantRow.subject == subject, GrantRow.model == model,
             GrantRow.permission == perm.value)
    with storage_errors(engine), exclusive(engine, _LOCK) as conn:
        row = conn.execute(select(GrantRow.granted_at, GrantRow.granted_by).where(*where)).first()
        if row is None:
            raise NotFound(f"no grant of {perm.value} on {model!r} to {subject}")
        conn.execute(delete(GrantRow).where(*where))
    return Grant(subject, model, perm, row.granted_at, row.granted_by)


def list_grants(engine: Engine, *, subject: str | None = None,
                model: str | None = None) -> list[Grant]:
    query = select(GrantRow.subject, GrantRow.model, GrantRow.permission, GrantRow.granted_at,
                   GrantRow.granted_by).order_by(GrantRow.subject, GrantRow.model,
                                                 GrantRow.permission)
    if subject is not None:
        query = query.where(GrantRow.subject == parse_subject(subject))
    if model is not None:
        query = query.where(GrantRow.model == parse_model(model))
    with storage_errors(engine), engine.connect() as conn:
        return [Grant(r.subject, r.model, Permission(r.permission), r.granted_at, r.granted_by)
                for r in conn.execute(query) if r.permission in _VALID]


_QUERY = (select(GrantRow.subject, GrantRow.model, GrantRow.permission)
          .where(GrantRow.subject.in_(bindparam("subjects", expanding=True)),
                 GrantRow.model.in_(bindparam("models", expanding=True))))


def _grants_for(engine: Engine, subjects: list[str], model: str) -> list[tuple[str, str, str]]:
    with storage_errors(engine), engine.connect() as conn:
        return [(r.subject, r.model, r.permission) for r in conn.execute(
            _QUERY, {"subjects": subjects, "models": [model, WILDCARD]})]


def permissions(engine: Engine, principal: Principal, model: str) -> frozenset[Permission]:
    """What ``principal`` may do with ``model``: the union of its grants; empty by default."""
    return frozenset(Permission(p) for _, _, p in _grants_for(engine, subjects_of(principal), model)
                     if p in _VALID)


class AccessCache:
    """:func:`permissions` for the request path: answers kept ``ttl`` seconds, at most
    ``max_entries`` of them. Thread-safe."""

    def __init__(self, engine: Engine, *, ttl: float = 1.0, max_entries: int = 10_000) -> None:
        self.engine = engine
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple[str, frozenset[str], str],
                            tuple[float, frozenset[Permission]]] = {}
        self._lock = threading.Lock()

    def permissions(self, principal: Principal, model: str) -> frozenset[Permission]:
        key = (principal.name, principal.groups, model)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        held = permissions(self.engine, principal, model)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (now + self.ttl, held)
        return held

    def clear(self) -> None:
        with self._lock:
            self._entries = {}


@dataclass(frozen=True)
class AccessReport:
    """What ``bastion access check`` shows: each permission and the grants it comes from,
    and whether black-box and white-box access meet (a separation-of-duties conflict)."""

    principal: str
    groups: tuple[str, ...]
    model: str
    permissions: frozenset[Permission]
    sources: dict[Permission, tuple[str, ...]] = field(default_factory=dict)
    conflict: str | None = None

    @property
    def black_box(self) -> bool:
        return bool(self.permissions & BLACK_BOX)

    @property
    def white_box(self) -> bool:
        return bool(self.permissions & WHITE_BOX)

    def to_dict(self) -> dict[str, Any]:
        order = list(Permission)
        return {"principal": self.principal, "groups": list(self.groups), "model": self.model,
                "permissions": [p.value for p in order if p in self.permissions],
                "sources": {p.value: list(self.sources[p]) for p in order if p in self.sources},
                "black_box": self.black_box, "white_box": self.white_box,
                "conflict": self.conflict}


def check(engine: Engine, principal: Principal, model: str) -> AccessReport:
    """The effective permissions of ``principal`` on ``model`` and where each comes from."""
    return check_subjects(engine, subjects_of(principal), model, label=principal.name,
                          groups=tuple(sorted(principal.groups)))


def check_subjects(engine: Engine, subjects: list[str], model: str, *, label: str,
                   groups: tuple[str, ...] = ()) -> AccessReport:
    """:func:`check` for explicit subjects (``bastion access check group:NAME MODEL``)."""
    model = parse_model(model)
    sources: dict[Permission, list[str]] = {}
    for subject, on, permission in sorted(_grants_for(engine, subjects, model)):
        if permission in _VALID:
            sources.setdefault(Permission(permission), []).append(f"{subject} on {on}")
    order = list(Permission)
    sources = {p: sources[p] for p in order if p in sources}
    held = frozenset(sources)
    conflict = None
    pair = _conflict(held)
    if pair is not None:
        black, white = pair
        conflict = (f"CONFLICT: black-box ({black.value}: {'; '.join(sources[black])}) and "
                    f"white-box ({white.value}: {'; '.join(sources[white])}) access to the "
                    "same model")
    return AccessReport(label, groups, model, held, {p: tuple(s) for p, s in sources.items()},
                        conflict)
