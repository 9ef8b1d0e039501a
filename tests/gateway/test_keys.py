"""API keys: argon2id at rest, one indexed read per request, argon2 once per key and process,
and revocation or expiry effective at once even with the verification cache warm."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text, update
from sqlalchemy.engine import Engine
from tests.gateway.conftest import Db

from bastion.db import connect
from bastion.errors import UsageError
from bastion.gateway import keys
from bastion.gateway.errors import AuthError, NotFound
from bastion.gateway.tables import ApiKeyRow


class CountingHasher(PasswordHasher):
    """The real hasher, counting how often argon2 verification runs."""

    verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        type(self).verifies += 1
        return super().verify(hash, password)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[CountingHasher]]:
    real = keys.hasher()
    CountingHasher.verifies = 0
    monkeypatch.setattr(keys, "_hasher", CountingHasher(
        time_cost=real.time_cost, memory_cost=real.memory_cost, parallelism=real.parallelism,
        hash_len=real.hash_len, salt_len=real.salt_len, type=real.type))
    return CountingHasher


def _reason(auth: keys.KeyAuthenticator, token: Any, **kwargs: Any) -> str:
    with pytest.raises(AuthError) as failed:
        auth.authenticate(token, **kwargs)
    if isinstance(token, str) and len(token) > 8:
        assert token not in str(failed.value)  # an error never repeats the credential
    return failed.value.reason


def test_create_and_authenticate(engine: Engine) -> None:
    issued = keys.create_key(engine, "alice", groups=["ml-team", "ml-team", "eu"])
    assert issued.secret.startswith(f"bst_{issued.key_id}_")
    assert len(issued.secret) == keys.TOKEN_LENGTH
    assert issued.token == issued.secret
    assert issued.secret not in repr(issued)
    principal = keys.KeyAuthenticator(engine).authenticate(issued.secret)
    assert principal.name == "alice"
    assert principal.groups == frozenset({"ml-team", "eu"})
    assert principal.via == "key"
    assert principal.key_id == issued.key_id

    with engine.connect() as conn:
        row = conn.execute(select(ApiKeyRow.hash)).one()
        everything = " ".join(str(v) for v in conn.execute(
            text("SELECT * FROM bastion_api_keys")).one())
    assert row.hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert issued.secret not in everything
    assert issued.secret.rsplit("_", 1)[1] not in everything
    listed = keys.list_keys(engine)
    assert [k.key_id for k in listed] == [issued.key_id]
    assert listed[0].status() == "active"
    assert set(listed[0].to_dict()) == {"key_id", "principal", "groups", "created_at",
                                        "expires_at", "revoked_at", "status"}
    assert keys.list_keys(engine, principal="bob") == []


@pytest.mark.parametrize("token", [
    "", "bst_", "Bearer x", "bst_" + "a" * 56, "bst_ABCDEFGHIJKL_" + "a" * 43,
    "bst_abcdefghijkl-" + "a" * 43, "bst_abcdefghijkl_" + "a" * 42 + "=",
    "bst_abcdefghijk1_" + "a" * 43, "x" * 1_000_000, "bst_abcdefghijkl_" + "é" * 43,
])
def test_malformed_keys(engine: Engine, token: str) -> None:
    assert _reason(keys.KeyAuthenticator(engine), token) == "malformed"


def test_malformed_non_string(engine: Engine) -> None:
    assert _reason(keys.KeyAuthenticator(engine), None) == "malformed"


def test_unknown_and_invalid(engine: Engine, counting: type[CountingHasher]) -> None:
    issued = keys.create_key(engine, "alice")
    auth = keys.KeyAuthenticator(engine)
    unknown = f"bst_{'a' * 12}_{secrets.token_urlsafe(32)}"
    assert _reason(auth, unknown) == "unknown"
    assert counting.verifies == 0  # no row, no argon2
    wrong = f"bst_{issued.key_id}_{secrets.token_urlsafe(32)}"
    assert _reason(auth, wrong) == "invalid"
    auth.authenticate(issued.secret)  # the right one still works, and is now cached
    assert _reason(auth, wrong) == "invalid"  # a warm cache accepts only the key it saw
    assert counting.verifies == 3


def test_verification_is_cached(engine: Engine, counting: type[CountingHasher]) -> None:
    issued = keys.create_key(engine, "alice")
    auth = keys.KeyAuthenticator(engine)
    for _ in range(20):
        auth.authenticate(issued.secret)
    assert counting.verifies == 1
    auth.clear()
    auth.authenticate(issued.secret)
    assert counting.verifies == 2
    # Another process (another authenticator) pays argon2 once too.
    keys.KeyAuthenticator(engine).authenticate(issued.secret)
    assert counting.verifies == 3


def test_cache_is_bounded(engine: Engine) -> None:
    auth = keys.KeyAuthenticator(engine, cache_size=2)
    issued = [keys.create_key(engine, f"u{i}") for i in range(4)]
    for key in issued:
        auth.authenticate(key.secret)
    assert len(auth._cache) == 2
    assert set(auth._cache) == {issued[2].key_id, issued[3].key_id}


def test_revocation_is_immediate_with_a_warm_cache(db: Db) -> None:
    issued = keys.create_key(db.engine, "alice")
    auth = keys.KeyAuthenticator(db.engine)
    auth.authenticate(issued.secret)  # cache warm
    other = connect(db.url, schema=db.schema)  # another process's connection pool
    try:
        info = keys.revoke(other, issued.key_id)
    finally:
        other.dispose()
    assert info.status() == "revoked"
    assert info.revoked_at is not None
    assert _reason(auth, issued.secret) == "revoked"
    assert keys.revoke(db.engine, issued.key_id).revoked_at == info.revoked_at  # idempotent
    with pytest.raises(NotFound):
        keys.revoke(db.engine, "a" * 12)


def test_expiry(engine: Engine) -> None:
    now = datetime.now(UTC)
    issued = keys.create_key(engine, "alice", expires=timedelta(hours=1))
    auth = keys.KeyAuthenticator(engine)
    assert auth.authenticate(issued.secret).name == "alice"
    assert _reason(auth, issued.secret, now=now + timedelta(hours=2)) == "expired"
    short = keys.create_key(engine, "bob", expires=now + timedelta(seconds=1))
    assert auth.authenticate(short.secret).name == "bob"
    time.sleep(1.1)
    assert _reason(auth, short.secret) == "expired"
    assert keys.list_keys(engine, principal="bob")[0].status() == "expired"
    with pytest.raises(UsageError, match="already past"):
        keys.create_key(engine, "carol", expires=now - timedelta(days=1))
    with pytest.raises(UsageError, match="time zone"):
        keys.create_key(engine, "carol", expires=datetime(2099, 1, 1))


def test_names_are_validated(engine: Engine) -> None:
    with pytest.raises(UsageError, match="principal"):
        keys.create_key(engine, "alice smith")
    with pytest.raises(UsageError, match="group"):
        keys.create_key(engine, "alice", groups=["ok", "bad\ngroup"])
    with pytest.raises(UsageError, match="at most"):
        keys.create_key(engine, "alice", groups=[f"g{i}" for i in range(keys.MAX_GROUPS + 1)])
    assert keys.list_keys(engine) == []


def test_weaker_hashes_are_upgraded(engine: Engine) -> None:
    issued = keys.create_key(engine, "alice")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(issued.secret)
    with engine.begin() as conn:
        conn.execute(update(ApiKeyRow).values(hash=weak))
    keys.KeyAuthenticator(engine).authenticate(issued.secret)
    with engine.connect() as conn:
        stored = conn.execute(select(ApiKeyRow.hash)).scalar_one()
    assert stored != weak
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert keys.KeyAuthenticator(engine).authenticate(issued.secret).name == "alice"


def test_cached_authentication_is_fast(engine: Engine) -> None:
    """The request path: one indexed read and a SHA-256, far below argon2's cost."""
    issued = keys.create_key(engine, "alice")
    auth = keys.KeyAuthenticator(engine)
    started = time.perf_counter()
    auth.authenticate(issued.secret)
    cold = time.perf_counter() - started
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        auth.authenticate(issued.secret)
    warm = (time.perf_counter() - started) / runs
    assert warm < cold / 3, (warm, cold)
    assert warm < 0.005, warm
