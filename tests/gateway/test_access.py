"""Grants: deny by default, users, groups and the ``*`` wildcard, separation of duties at
grant time, ``check`` showing where each permission comes from, and the TTL cache."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import Engine

from bastion.errors import UsageError
from bastion.gateway import access
from bastion.gateway.errors import NotFound, SeparationOfDutiesError
from bastion.gateway.principals import Permission, Principal

P = Permission
ALICE = Principal("alice")
BOB_IN_ML = Principal("bob", frozenset({"ml-team"}))


def _grant(engine: Engine, subject: str, model: str, *perms: Permission,
           sod: bool = True) -> None:
    for perm in perms:
        access.grant(engine, subject, model, perm, separation_of_duties=sod)


def test_deny_by_default(engine: Engine) -> None:
    assert access.permissions(engine, ALICE, "iris") == frozenset()
    assert access.permissions(engine, Principal("*"), "*") == frozenset()
    report = access.check(engine, ALICE, "iris")
    assert report.permissions == frozenset()
    assert report.conflict is None


def test_user_group_and_wildcard_grants(engine: Engine) -> None:
    _grant(engine, "alice", "iris", P.PREDICT)  # a bare name is a user
    _grant(engine, "group:ml-team", "iris", P.SCORES)
    _grant(engine, "user:carol", "*", P.ADMIN)
    assert access.permissions(engine, ALICE, "iris") == {P.PREDICT}
    assert access.permissions(engine, ALICE, "other") == frozenset()
    assert access.permissions(engine, BOB_IN_ML, "iris") == {P.SCORES}
    both = Principal("alice", frozenset({"ml-team"}))
    assert access.permissions(engine, both, "iris") == {P.PREDICT, P.SCORES}
    assert access.permissions(engine, Principal("carol"), "anything") == {P.ADMIN}
    assert access.permissions(engine, Principal("carol"), "*") == {P.ADMIN}
    # A group named like a user, or a user named like a group, gets nothing of the other.
    assert access.permissions(engine, Principal("ml-team"), "iris") == frozenset()
    assert access.permissions(engine, Principal("x", frozenset({"alice"})), "iris") == frozenset()

    report = access.check(engine, both, "iris")
    assert report.sources == {P.PREDICT: ("user:alice on iris",),
                              P.SCORES: ("group:ml-team on iris",)}
    assert report.black_box
    assert not report.white_box
    assert report.to_dict()["permissions"] == ["predict", "scores"]
    listed = access.list_grants(engine, subject="group:ml-team")
    assert [(g.model, g.permission) for g in listed] == [("iris", P.SCORES)]


def test_grant_is_idempotent_and_revocable(engine: Engine) -> None:
    first = access.grant(engine, "alice", "iris", "predict", separation_of_duties=True)
    again = access.grant(engine, "user:alice", "iris", P.PREDICT, separation_of_duties=True)
    assert again == first
    assert len(access.list_grants(engine)) == 1
    gone = access.revoke_grant(engine, "alice", "iris", "predict")
    assert gone.permission is P.PREDICT
    assert access.permissions(engine, ALICE, "iris") == frozenset()
    with pytest.raises(NotFound, match="no grant"):
        access.revoke_grant(engine, "alice", "iris", "predict")


@pytest.mark.parametrize(("first", "second"), [
    (("iris", P.PREDICT), ("iris", P.DOWNLOAD)),
    (("iris", P.DOWNLOAD), ("iris", P.SCORES)),
    (("iris", P.EXPLAIN), ("*", P.DOWNLOAD)),  # a wildcard grant counts for every model
    (("*", P.DOWNLOAD), ("iris", P.PREDICT)),
])
@pytest.mark.parametrize("subject", ["user:alice", "group:ml-team"])
def test_separation_of_duties_at_grant_time(engine: Engine, subject: str,
                                            first: tuple[str, Permission],
                                            second: tuple[str, Permission]) -> None:
    access.grant(engine, subject, first[0], first[1], separation_of_duties=True)
    with pytest.raises(SeparationOfDutiesError, match=r"black-box .* and white-box"):
        access.grant(engine, subject, second[0], second[1], separation_of_duties=True)
    assert len(access.list_grants(engine)) == 1  # nothing was granted
    # With the policy off, the same grant goes through.
    access.grant(engine, subject, second[0], second[1], separation_of_duties=False)
    assert len(access.list_grants(engine)) == 2


def test_separation_of_duties_allows_other_models_and_subjects(engine: Engine) -> None:
    _grant(engine, "alice", "iris", P.PREDICT, P.SCORES, P.EXPLAIN, P.ADMIN)
    _grant(engine, "alice", "mnist", P.DOWNLOAD)
    _grant(engine, "bob", "iris", P.DOWNLOAD)
    assert access.permissions(engine, ALICE, "iris") == {P.PREDICT, P.SCORES, P.EXPLAIN,
                                                         P.ADMIN}


def test_check_reports_conflicts_through_groups(engine: Engine) -> None:
    # Each grant is fine on its own subject; together, through a group, they conflict.
    _grant(engine, "alice", "iris", P.PREDICT)
    _grant(engine, "group:auditors", "*", P.DOWNLOAD)
    principal = Principal("alice", frozenset({"auditors"}))
    report = access.check(engine, principal, "iris")
    assert report.permissions == {P.PREDICT, P.DOWNLOAD}
    assert report.conflict is not None
    assert "user:alice on iris" in report.conflict
    assert "group:auditors on *" in report.conflict
    group_only = access.check_subjects(engine, ["group:auditors"], "iris",
                                       label="group:auditors")
    assert group_only.permissions == {P.DOWNLOAD}
    assert group_only.conflict is None


@pytest.mark.parametrize(("subject", "model", "perm", "message"), [
    ("user:", "iris", "predict", "name is required"),
    ("group:a b", "iris", "predict", "group"),
    ("alice", "ir is", "predict", "model"),
    ("alice", "iris", "root", "unknown permission"),
    ("alice", "**", "predict", "model"),
])
def test_invalid_grants(engine: Engine, subject: str, model: str, perm: str,
                        message: str) -> None:
    with pytest.raises(UsageError, match=message):
        access.grant(engine, subject, model, perm, separation_of_duties=True)


def test_access_cache(engine: Engine) -> None:
    cache = access.AccessCache(engine, ttl=0.3)
    _grant(engine, "alice", "iris", P.PREDICT)
    assert cache.permissions(ALICE, "iris") == {P.PREDICT}
    access.revoke_grant(engine, "alice", "iris", P.PREDICT)
    assert cache.permissions(ALICE, "iris") == {P.PREDICT}  # still cached
    time.sleep(0.35)
    assert cache.permissions(ALICE, "iris") == frozenset()  # at most ttl late
    _grant(engine, "alice", "iris", P.SCORES)
    cache.clear()
    assert cache.permissions(ALICE, "iris") == {P.SCORES}
    # Groups are part of the key: the same name with other groups is another answer.
    _grant(engine, "group:ml-team", "iris", P.EXPLAIN)
    assert cache.permissions(Principal("alice", frozenset({"ml-team"})), "iris") == \
        {P.SCORES, P.EXPLAIN}


def test_access_cache_is_bounded(engine: Engine) -> None:
    cache = access.AccessCache(engine, ttl=60, max_entries=3)
    for i in range(10):
        cache.permissions(Principal(f"u{i}"), "iris")
    assert len(cache._entries) <= 3


def test_cached_permissions_are_fast(engine: Engine) -> None:
    _grant(engine, "alice", "iris", P.PREDICT)
    cache = access.AccessCache(engine, ttl=60)
    cache.permissions(ALICE, "iris")
    runs = 10_000
    started = time.perf_counter()
    for _ in range(runs):
        cache.permissions(ALICE, "iris")
    assert (time.perf_counter() - started) / runs < 50e-6


def test_identity_provider_subjects_with_a_bar_are_grantable(engine: Engine) -> None:
    # Auth0 and others name subjects "provider|id"; the JWT principal is "oidc:" + sub.
    who = Principal("oidc:auth0|5f7c8ec7c33c6c004bbafe82", via="jwt")
    _grant(engine, "user:oidc:auth0|5f7c8ec7c33c6c004bbafe82", "iris", P.PREDICT)
    assert access.permissions(engine, who, "iris") == {P.PREDICT}
    with pytest.raises(UsageError, match="model"):
        access.grant(engine, "user:alice", "iris|x", P.PREDICT, separation_of_duties=True)
