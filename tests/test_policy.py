"""The policy: parsing, discovery, errors that name file, key and fix, and its effect.

Every invalid policy must stop the run with a :class:`PolicyError` that says which file,
which key (``tool.bastion.ignore[0].reason``) and what was expected: a gate that silently
ignores a typo in its own configuration is a gate that does not hold.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from bastion.analyzer import Registry
from bastion.catalogue import rule_ids
from bastion.engine import scan_paths
from bastion.errors import PolicyError
from bastion.findings import Location, Severity
from bastion.policy import (
    DEFAULT,
    Ignore,
    Policy,
    apply_policy,
    find_policy,
    load_policy,
    parse_policy,
    path_matches,
)
from bastion.rules import SYMLINK_LOOP, UNREADABLE

FULL = """
fail-on = "high"
exclude = ["**/.venv/**"]

[severity]
SCAN-SYMLINK-LOOP = "critical"

[[ignore]]
rule = "SCAN-UNREADABLE"
path = "models/legacy/*.pkl"
reason = "Legacy models, retrained in Q1"
expires = 2099-03-31

[allow]
pickle-globals = ["mypkg.models.*", "collections.OrderedDict"]

[limits]
max-file-size = "64GiB"
max-archive-depth = 3
max-header-size = 1048576
max-decompressed-size = "2 GB"
"""


def _indent_as_tool(text: str) -> str:
    """The same policy as a ``[tool.bastion]`` table of pyproject.toml."""
    out = ["[tool.bastion]"]
    for line in text.splitlines():
        if line.startswith("[["):
            line = "[[tool.bastion." + line[2:]
        elif line.startswith("["):
            line = "[tool.bastion." + line[1:]
        out.append(line)
    return "\n".join(out) + "\n"


def _check_full(policy: Policy) -> None:
    assert policy.fail_on is Severity.HIGH
    assert policy.exclude == ("**/.venv/**",)
    assert policy.severity == {"SCAN-SYMLINK-LOOP": Severity.CRITICAL}
    assert policy.ignore[0].rule == "SCAN-UNREADABLE"
    assert policy.ignore[0].expires == date(2099, 3, 31)
    assert policy.allow.pickle_globals == ("mypkg.models.*", "collections.OrderedDict")
    assert policy.limits.max_file_size == 64 * 2**30
    assert policy.limits.max_archive_depth == 3
    assert policy.limits.max_header_size == 2**20
    assert policy.limits.max_decompressed_size == 2 * 10**9
    assert policy.limits.max_pickle_opcodes == DEFAULT.limits.max_pickle_opcodes  # default kept


def test_bastion_toml_top_level_keys(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text(FULL, encoding="utf-8")
    _check_full(load_policy(path, known_rules=rule_ids()))


def test_pyproject_tool_bastion_table(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n' + _indent_as_tool(FULL), encoding="utf-8")
    _check_full(load_policy(path, known_rules=rule_ids()))


def test_empty_policy_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text("", encoding="utf-8")
    assert load_policy(path) == DEFAULT


# -- discovery ----------------------------------------------------------------------------------


def test_discovery_walks_up_from_the_working_folder(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (tmp_path / "a" / "bastion.toml").write_text('fail-on = "low"\n', encoding="utf-8")
    # A pyproject.toml without [tool.bastion] on the way up is not a policy.
    (tmp_path / "a" / "b" / "pyproject.toml").write_text('[project]\nname = "x"\n',
                                                         encoding="utf-8")
    assert find_policy(deep) == (tmp_path / "a" / "bastion.toml").resolve()


def test_discovery_takes_the_nearest_pyproject_with_tool_bastion(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "a" / "bastion.toml").write_text("", encoding="utf-8")
    (deep / "pyproject.toml").write_text("[tool.bastion]\n", encoding="utf-8")
    assert find_policy(deep) == (deep / "pyproject.toml").resolve()


def test_discovery_prefers_bastion_toml_in_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text("", encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text("[tool.bastion]\n", encoding="utf-8")
    assert find_policy(tmp_path) == (tmp_path / "bastion.toml").resolve()


def test_discovery_finds_nothing(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 1\n", encoding="utf-8")
    found = find_policy(tmp_path)
    assert found is None or not found.is_relative_to(tmp_path)


# -- errors ------------------------------------------------------------------------------------

BAD = [
    # (case, bastion.toml text, words the message must contain)
    ("bad TOML", 'fail-on = "high\n', ["not valid TOML", "line 1"]),
    ("unknown key", "fail-onn = 'high'\n", ["fail-onn", "unknown key", "kebab-case"]),
    ("unknown nested key", "[limits]\nmax-size = 1\n", ["limits.max-size", "unknown key"]),
    ("bad severity name", 'fail-on = "severe"\n',
     ["fail-on", "expected one of", "'critical'", "'severe'"]),
    ("bad severity override", '[severity]\nSCAN-UNREADABLE = "hgh"\n',
     ["severity.SCAN-UNREADABLE", "expected one of", "'hgh'"]),
    ("ignore without reason", '[[ignore]]\nrule = "SCAN-UNREADABLE"\n',
     ["ignore[0].reason", "required"]),
    ("ignore with empty reason", '[[ignore]]\nrule = "SCAN-UNREADABLE"\nreason = ""\n',
     ["ignore[0].reason", "at least 3 characters"]),
    ("bad expiry date", '[[ignore]]\nrule = "SCAN-UNREADABLE"\nreason = "why not"\n'
     'expires = "next spring"\n', ["ignore[0].expires", "valid date", "'next spring'"]),
    ("unknown rule id in [severity]", '[severity]\nNO-SUCH-RULE = "high"\n',
     ["severity.NO-SUCH-RULE", "unknown rule id", "bastion rules"]),
    ("unknown rule id in [[ignore]]", '[[ignore]]\nrule = "NO-SUCH-*"\nreason = "because"\n',
     ["ignore[0].rule", "'NO-SUCH-*'", "matches no rule"]),
    ("bad size string", '[limits]\nmax-file-size = "12 furlongs"\n',
     ["limits.max-file-size", "expected a size like", "'12 furlongs'"]),
    ("negative size", "[limits]\nmax-header-size = -1\n",
     ["limits.max-header-size", "greater than 0"]),
    ("bad allowlist entry", '[allow]\npickle-globals = ["os.system; rm"]\n',
     ["allow.pickle-globals", "module.name"]),
    ("wrong type", "exclude = 5\n", ["exclude", "(got 5)"]),
]


@pytest.mark.parametrize(("case", "text", "words"), BAD, ids=[b[0] for b in BAD])
def test_invalid_bastion_toml(tmp_path: Path, case: str, text: str, words: list[str]) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path, known_rules=rule_ids())
    message = info.value.diagnostics()
    assert str(path) in message, case
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert "Value error," not in message  # pydantic's internals are not shown


@pytest.mark.parametrize(("case", "text", "words"), BAD[1:], ids=[b[0] for b in BAD[1:]])
def test_invalid_pyproject_names_the_tool_bastion_key(
    tmp_path: Path, case: str, text: str, words: list[str]
) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(_indent_as_tool(text), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path, known_rules=rule_ids())
    message = info.value.diagnostics()
    assert str(path) in message
    assert f"tool.bastion.{words[0]}" in message, f"{case}: {message}"


def test_pyproject_ignore_reason_key_is_spelled_out(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[[tool.bastion.ignore]]\nrule = "SCAN-UNREADABLE"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"tool\.bastion\.ignore\[0\]\.reason"):
        load_policy(path)


def test_pyproject_without_tool_bastion_named_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"has no \[tool\.bastion\] table"):
        load_policy(path)
    path.write_text("[tool]\nbastion = 3\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"\[tool\.bastion\] must be a table"):
        load_policy(path)


def test_missing_and_undecodable_policy_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.toml")
    bad = tmp_path / "bastion.toml"
    bad.write_bytes(b'fail-on = "\xff"\n')
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(bad)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text('fail-on = "x"\nbogus = 1\n[[ignore]]\nrule = "A"\n', encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    lines = info.value.message.splitlines()
    assert lines[0] == f"{path}: invalid policy"
    assert {line.split(":")[0].strip() for line in lines[1:]} == {
        "fail-on", "bogus", "ignore[0].reason"}


# -- sizes and globs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [(1048576, 2**20), ("1MiB", 2**20), ("2 GB", 2 * 10**9), ("512kib", 512 * 1024),
     ("1.5KB", 1500), ("10", 10)],
)
def test_size_strings(value: int | str, size: int) -> None:
    assert parse_policy({"limits": {"max-file-size": value}}).limits.max_file_size == size


@pytest.mark.parametrize(
    ("path", "pattern", "matches"),
    [
        ("models/legacy/a.pkl", "models/legacy/*.pkl", True),
        ("repo/models/legacy/a.pkl", "models/legacy/*.pkl", True),  # relative: any suffix
        ("repo/.venv/lib/x.py", "**/.venv/**", True),
        ("/abs/models/a.pkl", "/models/*.pkl", False),  # absolute: anchored
        ("models/a.pt", "models/*.pkl", False),
    ],
)
def test_path_globs(path: str, pattern: str, matches: bool) -> None:
    assert path_matches(path, pattern) is matches


def test_with_overrides_keeps_unset_values() -> None:
    policy = Policy(fail_on=Severity.LOW)
    assert policy.with_overrides(fail_on=None).fail_on is Severity.LOW
    assert policy.with_overrides(fail_on=Severity.CRITICAL).fail_on is Severity.CRITICAL


# -- applying ----------------------------------------------------------------------------------


def _ignore(**kwargs: object) -> Ignore:
    return parse_policy({"ignore": [{"reason": "accepted risk", **kwargs}]}).ignore[0]


def test_severity_override_changes_the_gate() -> None:
    finding = SYMLINK_LOOP.finding(Location(path="d/up"), "loop")
    policy = Policy(severity={"SCAN-SYMLINK-LOOP": Severity.CRITICAL})
    (out,) = apply_policy([finding], policy)
    assert out.severity is Severity.CRITICAL
    assert out.fingerprint == finding.fingerprint  # same finding, judged differently


def test_ignore_suppresses_but_keeps_the_finding() -> None:
    kept = UNREADABLE.finding(Location(path="models/new/a.pkl"), "unreadable")
    hidden = UNREADABLE.finding(Location(path="models/legacy/a.pkl"), "unreadable")
    policy = Policy(ignore=(_ignore(rule="SCAN-*", path="models/legacy/*",
                                    expires="2099-01-01"),))
    out = apply_policy([kept, hidden], policy, today=date(2030, 1, 1))
    assert len(out) == 2
    assert out[0].active
    assert out[1].suppression is not None
    assert out[1].suppression.reason == "accepted risk"
    assert out[1].suppression.expires == "2099-01-01"


def test_ignore_by_fingerprint_matches_one_finding() -> None:
    a = UNREADABLE.finding(Location(path="a"), "x")
    b = UNREADABLE.finding(Location(path="b"), "x")
    out = apply_policy([a, b], Policy(ignore=(_ignore(rule="*", fingerprint=b.fingerprint),)))
    assert [f.active for f in out] == [True, False]


def test_expired_ignore_no_longer_suppresses_and_is_reported() -> None:
    finding = UNREADABLE.finding(Location(path="a.pkl"), "unreadable")
    policy = Policy(ignore=(_ignore(rule="SCAN-UNREADABLE", expires="2025-06-30"),))
    out = apply_policy([finding], policy, today=date(2025, 7, 1), source="bastion.toml")
    assert out[0].active  # no longer suppressed
    expired = [f for f in out if f.rule_id == "POLICY-IGNORE-EXPIRED"]
    assert len(expired) == 1
    assert expired[0].location.path == "bastion.toml"
    assert "2025-06-30" in expired[0].message
    assert "accepted risk" in (expired[0].evidence or "")
    # On its last day the entry still holds.
    still = apply_policy([finding], policy, today=date(2025, 6, 30))
    assert [f.active for f in still] == [False]


def test_policy_through_a_scan(tmp_path: Path) -> None:
    """Overrides, suppressions and the gate together, on a real walk."""
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "up").symlink_to("..")  # SCAN-SYMLINK-LOOP (low)
    (root / "gone").symlink_to("nowhere")  # SCAN-BROKEN-SYMLINK (info)

    plain = scan_paths([root], registry=Registry())
    assert plain.passed

    strict = parse_policy({"severity": {"SCAN-SYMLINK-LOOP": "high"}}, known_rules=rule_ids())
    report = scan_paths([root], strict, registry=Registry())
    assert not report.passed
    assert [f.rule_id for f in report.failing] == ["SCAN-SYMLINK-LOOP"]

    accepted = strict.with_overrides(ignore=(_ignore(rule="SCAN-SYMLINK-LOOP", path="*/up"),))
    report = scan_paths([root], accepted, registry=Registry())
    assert report.passed
    loop = next(f for f in report.findings if f.rule_id == "SCAN-SYMLINK-LOOP")
    assert loop.suppression is not None  # still in the report, marked
    assert report.counts()[Severity.HIGH] == 0


def test_find_policy_reads_pyproject_only_when_it_can_hold_bastion(tmp_path: Path) -> None:
    from bastion.policy import find_policy

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n[tool.black]\nindent = 4\n')
    assert find_policy(project) is None
    # a key spelt with escapes is still [tool.bastion] to TOML, and so to Bastion
    (project / "pyproject.toml").write_text('[tool."b\\u0061stion"]\nfail-on = "low"\n')
    assert find_policy(project) == project / "pyproject.toml"
    (project / "pyproject.toml").write_text('[tool.bastion]\nfail-on = "low"\n')
    assert find_policy(project) == project / "pyproject.toml"
