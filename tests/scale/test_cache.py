"""The result cache: hits, what invalidates an entry and what does not, relocation to a new
path, the stat index, the PostgreSQL backend, and failures that must never cost a result."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from tests.scale.conftest import comparable, sqlite_url

from bastion.engine import scan_paths
from bastion.policy import Allow, Policy, Severity
from bastion.records import field_names, replace
from bastion.scale import keys, scan, work
from bastion.scale.cache import ResultCache, open_cache

#: Files of the corpus an analyzer claims, and those of them that are never cached (the
#: requirements file: its audit reads the advisory database).
CLAIMED = 17
UNCACHEABLE = 1


@pytest.fixture
def db(tmp_path: Path) -> str:
    return sqlite_url(tmp_path / "cache.db")


def test_second_scan_takes_every_cacheable_file_from_the_cache(
        corpus: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(work, "RACY_NS", 0)  # the corpus was written a moment ago
    plain = scan_paths([corpus])
    first = scan([corpus], cache=db)
    second = scan([corpus], cache=db)
    assert plain.stats.analyzed == CLAIMED
    assert first.stats.cached <= 1  # copy-b.bin may be served from copy-a.bin's fresh entry
    assert second.stats.cached == CLAIMED - UNCACHEABLE
    assert comparable(first) == comparable(plain)
    assert comparable(second) == comparable(plain)
    rules = {f.rule_id for f in second.findings}
    assert {"PICKLE-DANGEROUS-GLOBAL", "PICKLE-EXTENSION-CODE",
            "SUPPLY-VULNERABLE-DEPENDENCY", "SUPPLY-UNPINNED"} <= rules
    files, results = open_cache(db).counts()
    assert files == CLAIMED + 1  # the stat index also knows the unclaimed text file
    assert results == CLAIMED - UNCACHEABLE - 1  # copy-a.bin and copy-b.bin share one entry


def test_a_models_only_folder_is_analysed_zero_times_on_the_second_scan(
        corpus: Path, db: str) -> None:
    evil = corpus / "evil"
    scan([evil], cache=db)
    again = scan([evil], cache=db)
    assert again.stats.analyzed == again.stats.cached == len(list(evil.iterdir()))


def test_unchanged_files_are_not_hashed_again(corpus: Path, db: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []
    real = work._sha256

    def counting(handle: object, head: bytes, size: int) -> str | None:
        hashed.append(size)
        return real(handle, head, size)

    monkeypatch.setattr(work, "_sha256", counting)
    monkeypatch.setattr(work, "RACY_NS", 0)  # the corpus was written a moment ago
    evil = corpus / "evil"
    scan([evil], cache=db)
    assert len(hashed) == len(list(evil.iterdir()))
    hashed.clear()
    assert scan([evil], cache=db).stats.cached == len(list(evil.iterdir()))
    assert hashed == []  # stat index: neither read nor hashed
    os.utime(evil / "inst-opcode.pkl")  # touched, same bytes: hashed again, still a hit
    again = scan([evil], cache=db)
    assert len(hashed) == 1
    assert again.stats.cached == len(list(evil.iterdir()))


def test_changed_content_is_analysed_again_even_with_its_old_mtime(corpus: Path, db: str,
                                                                    marker: Path) -> None:
    target = corpus / "clean" / "weights.pkl"
    before = scan([target], cache=db)
    assert before.findings == ()
    st = target.stat()
    # Same size, dangerous content, modification time put back: only ctime tells.
    evil = b"cos\nsystem\n(S'" + f"touch {marker}".encode() + b"'\ntR."
    evil = evil[: st.st_size].ljust(st.st_size, b".")
    target.write_bytes(evil)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = scan([target], cache=db)
    assert after.stats.cached == 0
    assert after.findings != ()
    assert comparable(after) == comparable(scan_paths([target]))


def test_a_scanner_upgrade_invalidates(corpus: Path, db: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    scan([corpus], cache=db)
    monkeypatch.setattr(keys, "SCANNER_VERSION", keys.SCANNER_VERSION + "-next")
    upgraded = scan([corpus], cache=db)
    assert upgraded.stats.cached <= 1  # only the in-run duplicate
    assert scan([corpus], cache=db).stats.cached == CLAIMED - UNCACHEABLE


def test_policy_parts_analyzers_read_invalidate_and_the_others_do_not(corpus: Path,
                                                                       db: str) -> None:
    base = Policy()
    scan([corpus], base, cache=db)
    # Applied after the analyzers: the cached raw findings still hold.
    relaxed = replace(base, fail_on=Severity.CRITICAL,
                                  severity={"PICKLE-DANGEROUS-GLOBAL": Severity.LOW},
                                  exclude=("nothing-matches-this",))
    report = scan([corpus], relaxed, cache=db)
    assert report.stats.cached == CLAIMED - UNCACHEABLE
    assert comparable(report) == comparable(scan_paths([corpus], relaxed))
    assert "PICKLE-DANGEROUS-GLOBAL" not in {f.rule_id for f in report.findings
                                              if f.severity is not Severity.LOW}
    # Read by analyzers: an allow-list or a limit changes what they report.
    allowing = replace(base, allow=Allow(pickle_globals=("os.system",)))
    report = scan([corpus], allowing, cache=db)
    assert report.stats.cached <= 1  # at most the in-run duplicate (copy-b.bin)
    assert comparable(report) == comparable(scan_paths([corpus], allowing))
    limited = replace(base, limits=replace(base.limits,
                                                                   max_pickle_opcodes=50))
    report = scan([corpus], limited, cache=db)
    assert report.stats.cached <= 1
    assert "PICKLE-TOO-COMPLEX" in {f.rule_id for f in report.findings}
    assert comparable(report) == comparable(scan_paths([corpus], limited))


def test_every_policy_field_is_classified_for_the_cache_key() -> None:
    fields = set(field_names(Policy))
    assert fields <= set(keys.ANALYZER_POLICY) | set(keys.NOT_ANALYZER_POLICY), (
        "a new policy field: add it to keys.ANALYZER_POLICY if an analyzer reads it, else "
        "to keys.NOT_ANALYZER_POLICY")
    assert not set(keys.ANALYZER_POLICY) & set(keys.NOT_ANALYZER_POLICY)
    assert keys.policy_digest(Policy(fail_on=Severity.LOW)) == keys.policy_digest(Policy())
    assert keys.policy_digest(Policy(allow=Allow(keras_modules=("x.*",)))) != \
        keys.policy_digest(Policy())


def test_the_same_content_under_another_path_gets_its_findings_with_that_path(
        tmp_path: Path, corpus: Path, db: str) -> None:
    scan([corpus / "evil"], cache=db)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(corpus / "evil" / "getattr-gadget.pkl", elsewhere / "renamed.bin")
    report = scan([elsewhere], cache=db)
    assert report.stats.cached == 1
    assert report.findings
    assert {f.location.path for f in report.findings} == {f"{elsewhere}/renamed.bin"}
    assert comparable(report) == comparable(scan_paths([elsewhere]))


def test_a_result_that_names_its_file_serves_only_that_name(tmp_path: Path, corpus: Path,
                                                            db: str) -> None:
    """A gzip's member is named after the file (weights.pkl.gz holds weights.pkl)."""
    original = corpus / "archives" / "weights.pkl.gz"
    scan([original], cache=db)
    same_name, other_name = tmp_path / "a" / "weights.pkl.gz", tmp_path / "b" / "other.pkl.gz"
    for path in (same_name, other_name):
        path.parent.mkdir()
        shutil.copy(original, path)
    hit = scan([same_name], cache=db)
    assert hit.stats.cached == 1
    assert {f.location.members for f in hit.findings} == {("weights.pkl",)}
    miss = scan([other_name], cache=db)
    assert miss.stats.cached == 0
    assert {f.location.members for f in miss.findings} == {("other.pkl",)}
    assert comparable(miss) == comparable(scan_paths([other_name]))


def test_an_unreachable_cache_is_a_note_not_a_failed_scan(corpus: Path) -> None:
    report = scan([corpus / "evil"], cache="postgresql://nobody@127.0.0.1:1/none")
    assert report.stats.analyzed == len(list((corpus / "evil").iterdir()))
    assert any(n.startswith("result cache not used") for n in report.notes)
    assert comparable(report)["findings"] == comparable(scan_paths([corpus / "evil"]))["findings"]


def test_a_cache_that_breaks_mid_scan_loses_no_result(corpus: Path, db: str) -> None:
    cache = open_cache(db)
    scan([corpus], cache=cache)
    with cache.engine.begin() as conn:  # another process wrecks the cache
        conn.exec_driver_sql("DROP TABLE bastion_scan_results")
    report = scan([corpus], cache=cache)
    assert any("result cache disabled" in n for n in report.notes)
    plain = comparable(scan_paths([corpus]))
    got = comparable(report)
    assert got["findings"] == plain["findings"]
    assert got["skipped"] == plain["skipped"]
    assert report.stats.analyzed == CLAIMED


def test_a_bad_cache_url_is_a_usage_error(corpus: Path) -> None:
    from bastion.errors import UsageError

    with pytest.raises(UsageError, match="unsupported database"):
        scan([corpus], cache="mysql://x/y")


def test_postgresql_backend(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.db import connect, drop_schema

    monkeypatch.setattr(work, "RACY_NS", 0)

    schema = f"scan_cache_{uuid.uuid4().hex[:12]}"
    url = "postgresql://postgres@127.0.0.1:5432/test"
    cache = ResultCache(url, schema=schema)
    try:
        first = scan([corpus], cache=cache)
        second = scan([corpus], cache=cache)
        assert second.stats.cached == CLAIMED - UNCACHEABLE
        assert comparable(first) == comparable(second) == comparable(scan_paths([corpus]))
        assert cache.counts() == (CLAIMED + 1, CLAIMED - UNCACHEABLE - 1)
    finally:
        cache.close()
        engine = connect(url)
        drop_schema(engine, schema)
        engine.dispose()


def test_whole_scan_checks_run_every_time(corpus: Path, db: str) -> None:
    from bastion.policy import Sign

    policy = Policy(sign=Sign(require=("*/evil/*",)))
    cold = scan([corpus], policy, cache=db)
    warm = scan([corpus], policy, cache=db)
    assert warm.stats.cached == CLAIMED - UNCACHEABLE
    missing = [f for f in warm.findings if f.rule_id == "SIGN-MISSING"]
    assert len(missing) == 1
    assert comparable(cold) == comparable(warm) == comparable(scan_paths([corpus], policy))


def test_plug_ins_are_cached_only_when_they_say_they_may_be(tmp_path: Path, db: str) -> None:
    from tests.scale.plugins import Marked

    from bastion.analyzer import Registry

    class Unsure(Marked):
        name = "test-unsure"
        cache_safe = False

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"MARK EVIL")
    for registry, cached in ((Registry([Marked()]), 1), (Registry([Unsure()]), 0)):
        scan([tmp_path / "m"], registry=registry, cache=db)
        again = scan([tmp_path / "m"], registry=registry, cache=db)
        assert again.stats.cached == cached
        assert [f.rule_id for f in again.findings] == ["TEST-SCALE-EVIL"]


def test_a_file_modified_a_moment_ago_is_hashed_again_next_time(tmp_path: Path, db: str,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """Its stat could repeat after a rewrite within the same timestamp tick (racy clean)."""
    hashed: list[int] = []
    real = work._sha256
    monkeypatch.setattr(work, "_sha256",
                        lambda handle, head, size: hashed.append(size) or real(handle, head, size))
    (tmp_path / "m").mkdir()
    fresh = tmp_path / "m" / "fresh.pkl"
    fresh.write_bytes(b"\x80\x04N.")
    scan([fresh], cache=db)
    assert open_cache(db).counts() == (0, 1)  # a result, but no stat index row
    again = scan([fresh], cache=db)
    assert (len(hashed), again.stats.cached) == (2, 1)  # hashed again; still a cache hit
