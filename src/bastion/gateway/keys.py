"""API keys: issued once, stored as an argon2id hash, looked up by a public id prefix.

A key reads ``bst_<key_id>_<secret>``: ``key_id`` is 12 characters of lower-case base32
(60 random bits, public: shown by ``bastion keys list``, written to logs), ``secret`` is 32
random bytes, URL-safe base64 (43 characters). Only the argon2id hash of the whole key is
stored; the key itself is shown once, by :func:`create_key`, and never again.

Argon2 parameters (:data:`ARGON2`): argon2id, 19 MiB, 2 passes, 1 lane, 16-byte salt,
32-byte tag: OWASP's minimum recommendation for argon2id (about 16 ms per check on one
core of the development machine). The secret has 256 random bits, so no cost setting is
what stops guessing it; the hash is there so a copy of the database is not a set of working
keys, and the cost is kept low because each check is paid by the server. Hashes made with
other parameters are rehashed on the next successful check.

The request path (:class:`KeyAuthenticator`) must add well under a millisecond, so argon2
runs once per key per process: a successful check is remembered as the key's SHA-256
(compared with :func:`hmac.compare_digest`) beside the stored hash it matched. Every request
still reads the key's row (one primary-key SELECT), so a revocation or an expiry takes effect
at once in every process, cache or no cache. Checks that do run argon2 (a new key, or a
wrong secret) are limited to a few at a time, so a flood of bad keys cannot take all memory.

Neither the key nor its hash is ever logged, printed by ``repr``, or returned by
:func:`list_keys`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from bastion.db import StorageError, as_json, as_utc, fetch_one, storage_errors
from bastion.errors import UsageError
from bastion.gateway.errors import AuthError, NotFound
from bastion.gateway.principals import Principal, check_name
from bastion.gateway.tables import ApiKeyRow

if TYPE_CHECKING:
    from argon2 import PasswordHasher

TOKEN_PREFIX = "bst_"  # noqa: S105 - the public prefix, not a secret
KEY_ID_LENGTH = 12
SECRET_BYTES = 32
#: Every key has exactly this many characters: "bst_" + 12 + "_" + 43.
TOKEN_LENGTH = len(TOKEN_PREFIX) + KEY_ID_LENGTH + 1 + 43
_TOKEN = re.compile(r"bst_([a-z2-7]{12})_([A-Za-z0-9_-]{43})\Z")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
#: argon2id parameters (see the module docstring for why these).
ARGON2 = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1, "hash_len": 32,
          "salt_len": 16}
MAX_GROUPS = 64

_hasher: PasswordHasher | None = None


def hasher() -> PasswordHasher:
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher, Type

        _hasher = PasswordHasher(time_cost=ARGON2["time_cost"],
                                 memory_cost=ARGON2["memory_cost"],
                                 parallelism=ARGON2["parallelism"], hash_len=ARGON2["hash_len"],
                                 salt_len=ARGON2["salt_len"], type=Type.ID)
    return _hasher


@dataclass(frozen=True)
class IssuedKey:
    """A new key. ``secret`` is the whole key the client presents (``bst_<key_id>_...``);
    it exists only in this object, and ``repr`` does not show it."""

    key_id: str
    secret: str = field(repr=False)
    principal: str = ""
    groups: tuple[str, ...] = ()
    expires_at: datetime | None = None

    @property
    def token(self) -> str:
        """The same as :attr:`secret`: what goes in ``Authorization: Bearer``."""
        return self.secret


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: everything but the secret and its hash."""

    key_id: str
    principal: str
    groups: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "principal": self.principal, "groups": list(self.groups),
                "created_at": self.created_at.isoformat(),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "status": self.status()}


def _groups(groups: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted({check_name(g, "group") for g in groups}))
    if len(out) > MAX_GROUPS:
        raise UsageError(f"{len(out)} groups: at most {MAX_GROUPS} per key")
    return out


def create_key(engine: Engine, principal: str, *, groups: Iterable[str] = (),
               expires: datetime | timedelta | None = None,
               now: datetime | None = None) -> IssuedKey:
    """Issue a key for ``principal`` (member of ``groups``), valid until ``expires`` (a time,
    or a duration from now; ``None``: until revoked)."""
    check_name(principal, "principal", principal=True)
    members = _groups(groups)
    now = now or datetime.now(UTC)
    expires_at = now + expires if isinstance(expires, timedelta) else expires
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise UsageError("expiry: give a time with a time zone")
        if expires_at <= now:
            raise UsageError(f"expiry {expires_at.isoformat()} is already past")
    for _ in range(3):  # a key_id collision (60 random bits) is all but impossible; retry
        key_id = "".join(secrets.choice(_BASE32) for _ in range(KEY_ID_LENGTH))
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        row = {"key_id": key_id, "hash": hasher().hash(token), "principal": principal,
               "groups": list(members), "created_at": now, "expires_at": expires_at,
               "revoked_at": None}
        try:
            with storage_errors(engine), engine.begin() as conn:
                conn.execute(insert(ApiKeyRow).values(**row))
        except StorageError:
            if _exists(engine, key_id):
                continue
            raise
        return IssuedKey(key_id, token, principal, members, expires_at)
    raise UsageError("could not draw a unique key id; try again")  # pragma: no cover


def _exists(engine: Engine, key_id: str) -> bool:
    with storage_errors(engine), engine.connect() as conn:
        return conn.execute(select(ApiKeyRow.key_id).where(ApiKeyRow.key_id == key_id)
                            ).first() is not None


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.key_id, row.principal, tuple(row.groups or ()), row.created_at,
                   row.expires_at, row.revoked_at)


_INFO_COLUMNS = (ApiKeyRow.key_id, ApiKeyRow.principal, ApiKeyRow.groups,
                 ApiKeyRow.created_at, ApiKeyRow.expires_at, ApiKeyRow.revoked_at)


def list_keys(engine: Engine, *, principal: str | None = None) -> list[KeyInfo]:
    """Every key (of ``principal``), oldest first; never a secret or a hash."""
    query = select(*_INFO_COLUMNS).order_by(ApiKeyRow.created_at, ApiKeyRow.key_id)
    if principal is not None:
        query = query.where(ApiKeyRow.principal == principal)
    with storage_errors(engine), engine.connect() as conn:
        return [_info(row) for row in conn.execute(query)]


def revoke(engine: Engine, key_id: str, *, now: datetime | None = None) -> KeyInfo:
    """Revoke a key: refused from the next request on, in every process. Revoking a revoked
    key changes nothing (its first revocation time is kept)."""
    with storage_errors(engine), engine.begin() as conn:
        conn.execute(update(ApiKeyRow)
                     .where(ApiKeyRow.key_id == key_id, ApiKeyRow.revoked_at.is_(None))
                     .values(revoked_at=now or datetime.now(UTC)))
        row = conn.execute(select(*_INFO_COLUMNS).where(ApiKeyRow.key_id == key_id)).first()
    if row is None:
        raise NotFound(f"no API key {key_id!r}")
    return _info(row)


def parse_token(token: object) -> str:
    """The key id of a well-formed key; :class:`AuthError` ``malformed`` otherwise (the
    length is checked first, so a huge header costs nothing)."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        raise AuthError("malformed", "malformed API key")
    match = _TOKEN.match(token)
    if match is None:
        raise AuthError("malformed", "malformed API key")
    return match.group(1)


_KEY_ROW = (f"SELECT hash, principal, groups, expires_at, revoked_at "  # noqa: S608 - constant
            f"FROM {ApiKeyRow.__tablename__} WHERE key_id = ?")


def _stored_groups(stored: Any) -> frozenset[str]:
    """A key's groups column as the driver gives it: JSON text on SQLite (parsed once per
    distinct text), a list on PostgreSQL."""
    return _groups_text(stored) if isinstance(stored, str) else frozenset(as_json(stored) or ())


@functools.lru_cache(maxsize=1024)
def _groups_text(text: str) -> frozenset[str]:
    return frozenset(as_json(text) or ())


class KeyAuthenticator:
    """Turns an API key into a :class:`Principal`, or raises :class:`AuthError` with reason
    ``malformed``, ``unknown``, ``invalid``, ``revoked``, ``expired`` (or ``busy`` when too
    many argon2 checks already run). Thread-safe; one per process."""

    def __init__(self, engine: Engine, *, cache_size: int = 10_000,
                 max_concurrent_hashes: int = 4, hash_wait: float = 10.0) -> None:
        self.engine = engine
        self.cache_size = cache_size
        self.hash_wait = hash_wait
        #: key_id -> (sha256 of the key that verified, the stored hash it verified against)
        self._cache: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._hashing = threading.BoundedSemaphore(max_concurrent_hashes)

    def authenticate(self, token: str, *, now: datetime | None = None) -> Principal:
        key_id = parse_token(token)
        # Every request re-reads the row, so a revocation takes effect at once.
        row = fetch_one(self.engine, _KEY_ROW, (key_id,))
        if row is None:
            raise AuthError("unknown", "unknown API key")
        stored, principal, groups, expires_at, revoked_at = row
        digest = hashlib.sha256(token.encode("ascii")).digest()
        cached = self._cache.get(key_id)
        if cached is None or cached[1] != stored or not hmac.compare_digest(cached[0], digest):
            self._remember(key_id, digest, self._check(key_id, token, stored))
        if revoked_at is not None:
            raise AuthError("revoked", "API key revoked")
        expires = as_utc(expires_at)
        if expires is not None and expires <= (now or datetime.now(UTC)):
            raise AuthError("expired", "API key expired")
        return Principal(name=principal, groups=_stored_groups(groups), via="key",
                         key_id=key_id)

    def _check(self, key_id: str, token: str, stored: str) -> str:
        """argon2 verification (bounded concurrency); the stored hash it matched."""
        from argon2.exceptions import InvalidHashError, VerificationError

        if not self._hashing.acquire(timeout=self.hash_wait):
            raise AuthError("busy", "too many API key checks at once; retry")
        try:
            ph = hasher()
            try:
                ph.verify(stored, token)
            except (VerificationError, InvalidHashError):
                raise AuthError("invalid", "invalid API key") from None
            if ph.check_needs_rehash(stored):
                fresh = ph.hash(token)
                with storage_errors(self.engine), self.engine.begin() as conn:
                    conn.execute(update(ApiKeyRow).where(ApiKeyRow.key_id == key_id,
                                                         ApiKeyRow.hash == stored)
                                 .values(hash=fresh))
                return fresh
            return stored
        finally:
            self._hashing.release()

    def _remember(self, key_id: str, digest: bytes, stored: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)
            while len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key_id] = (digest, stored)

    def clear(self) -> None:
        """Forget every verification (the next request per key runs argon2 again)."""
        with self._lock:
            self._cache.clear()
