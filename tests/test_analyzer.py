"""The plug-in seam: an analyzer defined here is dispatched like Bastion's own.

Capability semantics (first claimant of a capability wins; different capabilities all run),
nested dispatch through ``ctx.analyze_nested``, and fail-closed handling of an analyzer that
raises, in ``analyze`` or in ``claims``: the failure is a ``SCAN-ANALYZER-ERROR`` finding
and the scan goes on with the next file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.analyzer import Context, Registry, Target
from bastion.cli import app
from bastion.engine import scan_paths
from bastion.findings import Category, Finding, Location, Severity
from bastion.rules import Rule

MAGIC = b"TESTFMT\x00"
BOX = b"TESTBOX\x00"

EVIL_MARK = Rule(
    id="TEST-EVIL-MARK", title="Evil marker", severity=Severity.HIGH,
    category=Category.CODE_EXECUTION, description="The test format holds the EVIL marker.",
    references=("AML.T0011",),
)
SEEN = Rule(id="TEST-SEEN", title="Seen", severity=Severity.INFO, category=Category.COVERAGE,
            description="The analyzer looked at the file.")


class MagicAnalyzer:
    """Claims content starting with MAGIC; reports each EVIL marker at its byte offset."""

    name = "test-magic"
    capability = "model"
    rules: tuple[Rule, ...] = (EVIL_MARK,)

    def claims(self, target: Target) -> bool:
        return target.head.startswith(MAGIC)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        with target.open() as stream:
            data = stream.read(1 << 16)
        start = data.find(b"EVIL")
        while start != -1:
            yield EVIL_MARK.finding(target.location.at(offset=start), "EVIL marker found",
                                    evidence=data[start:start + 8].decode("latin-1"))
            start = data.find(b"EVIL", start + 1)


class SeenAnalyzer:
    """Claims everything, in a capability of its own, or in ``model`` to test precedence."""

    rules: tuple[Rule, ...] = (SEEN,)

    def __init__(self, name: str = "test-seen", capability: str = "audit") -> None:
        self.name = name
        self.capability = capability

    def claims(self, target: Target) -> bool:
        return True

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return [SEEN.finding(target.location, f"{self.name} saw it")]


class BoxAnalyzer:
    """A container: BOX, then members separated by NUL NUL; each dispatched as nested."""

    name = "test-box"
    capability = "archive"
    rules: tuple[Rule, ...] = ()

    def claims(self, target: Target) -> bool:
        return target.head.startswith(BOX)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        with target.open() as stream:
            body = stream.read(1 << 16)[len(BOX):]
        for i, member in enumerate(body.split(b"\x00\x00")):
            location = target.location.child(f"member{i}.bin")
            yield from ctx.analyze_nested(Target.from_bytes(member, location, target.depth + 1))


class BrokenAnalyzer:
    """Reports one finding, then fails the way a buggy parser does."""

    name = "test-broken"
    capability = "model"
    rules: tuple[Rule, ...] = (SEEN,)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def claims(self, target: Target) -> bool:
        return target.head.startswith(b"BREAK")

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        yield SEEN.finding(target.location, "before the crash")
        raise self.error


class BadClaimAnalyzer:
    name = "test-bad-claim"
    capability = "model"
    rules: tuple[Rule, ...] = ()

    def claims(self, target: Target) -> bool:
        return target.head[100] == 0  # IndexError on short files

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    (root / "a.weights").write_bytes(MAGIC + b"....EVIL....EVIL")
    (root / "clean.weights").write_bytes(MAGIC + b"nothing here")
    (root / "notes.txt").write_text("hello\n", encoding="utf-8")
    return root


def _rules_at(findings: Iterable[Finding]) -> list[tuple[str, str, int | None]]:
    return [(f.rule_id, str(f.location.path).rsplit("/", 1)[-1], f.location.offset)
            for f in findings]


def test_plugin_is_dispatched_with_the_right_location(tree: Path) -> None:
    report = scan_paths([tree], registry=Registry([MagicAnalyzer()]))
    assert _rules_at(report.findings) == [
        ("TEST-EVIL-MARK", "a.weights", len(MAGIC) + 4),
        ("TEST-EVIL-MARK", "a.weights", len(MAGIC) + 12),
    ]
    assert report.findings[0].location.path == f"{tree}/a.weights"
    assert report.findings[0].evidence == "EVIL...."
    assert not report.passed  # HIGH is above the default threshold
    assert report.stats.files == 3
    assert report.stats.analyzed == 2
    assert [s.path.rsplit("/", 1)[-1] for s in report.skipped] == ["notes.txt"]


def test_first_claimant_of_a_capability_wins(tree: Path) -> None:
    registry = Registry([MagicAnalyzer(), SeenAnalyzer("test-generic", capability="model")])
    report = scan_paths([tree / "a.weights"], registry=registry)
    assert {f.rule_id for f in report.findings} == {"TEST-EVIL-MARK"}
    # register(first=True) puts an analyzer ahead of the others.
    registry.register(SeenAnalyzer("test-override", capability="model"), first=True)
    report = scan_paths([tree / "a.weights"], registry=registry)
    assert [f.message for f in report.findings] == ["test-override saw it"]


def test_two_capabilities_both_run(tree: Path) -> None:
    registry = Registry([MagicAnalyzer(), SeenAnalyzer()])
    report = scan_paths([tree / "a.weights"], registry=registry)
    assert sorted(f.rule_id for f in report.findings) == [
        "TEST-EVIL-MARK", "TEST-EVIL-MARK", "TEST-SEEN"]
    assert len(registry.only("audit")) == 1
    assert {r.id for r in registry.rules()} == {"TEST-EVIL-MARK", "TEST-SEEN"}


def test_nested_members_are_dispatched_with_their_member_chain(tmp_path: Path) -> None:
    box = tmp_path / "bundle.box"
    box.write_bytes(BOX + MAGIC + b"EVIL" + b"\x00\x00" + b"plain" + b"\x00\x00"
                    + MAGIC + b"xxEVIL")
    report = scan_paths([box], registry=Registry([MagicAnalyzer(), BoxAnalyzer()]))
    found = [(f.location.members, f.location.offset) for f in report.findings]
    assert found == [(("member0.bin",), len(MAGIC)), (("member2.bin",), len(MAGIC) + 2)]
    assert str(report.findings[1].location) == f"{box} » member2.bin @{len(MAGIC) + 2}"


@pytest.mark.parametrize(
    "error", [ValueError("bad length field"), RecursionError("deep"), MemoryError(),
              KeyError("x"), OSError(5, "Input/output error")],
    ids=lambda e: type(e).__name__,
)
def test_raising_analyzer_fails_closed_and_the_scan_goes_on(
    tree: Path, error: BaseException
) -> None:
    (tree / "crash.weights").write_bytes(b"BREAK" + b"x" * 20)
    registry = Registry([BrokenAnalyzer(error), MagicAnalyzer()])
    report = scan_paths([tree], registry=registry)
    crash = [f for f in report.findings if f.location.path.endswith("crash.weights")]
    assert [f.rule_id for f in crash] == ["SCAN-ANALYZER-ERROR", "TEST-SEEN"]
    assert crash[0].severity is Severity.HIGH
    assert crash[0].properties == {"analyzer": "test-broken"}
    assert type(error).__name__ in crash[0].message
    assert not report.passed
    # The other files were still analysed.
    assert sum(f.rule_id == "TEST-EVIL-MARK" for f in report.findings) == 2


def test_raising_claims_fails_closed_and_others_still_run(tree: Path) -> None:
    registry = Registry([BadClaimAnalyzer(), SeenAnalyzer()])
    report = scan_paths([tree / "notes.txt"], registry=registry)
    assert sorted(f.rule_id for f in report.findings) == ["SCAN-ANALYZER-ERROR", "TEST-SEEN"]
    error = next(f for f in report.findings if f.rule_id == "SCAN-ANALYZER-ERROR")
    assert "test-bad-claim" in error.message
    assert "IndexError" in error.message


class _NoAnalyze:
    name = "half"
    capability = "model"
    rules = ()

    def claims(self, target: Target) -> bool:
        return True


def test_registry_rejects_non_conforming_objects() -> None:
    registry = Registry()
    with pytest.raises(TypeError, match="does not implement the Analyzer protocol"):
        registry.register(_NoAnalyze())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        registry.register(object())  # type: ignore[arg-type]
    assert len(registry) == 0


def test_registry_rejects_duplicate_names() -> None:
    registry = Registry([MagicAnalyzer()])
    with pytest.raises(ValueError, match="'test-magic' is already registered"):
        registry.register(MagicAnalyzer())
    with pytest.raises(ValueError, match="already registered"):
        Registry([SeenAnalyzer(), SeenAnalyzer()])
    assert [a.name for a in registry] == ["test-magic"]


def test_target_name_and_from_bytes() -> None:
    target = Target.from_bytes(b"x" * 5000, Location(path="a/b.zip").child("dir\\c.pkl"))
    assert target.name == "c.pkl"
    assert len(target.head) == 4096
    assert target.size == 5000
    assert target.open().read() == b"x" * 5000


def test_plugin_through_the_cli(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI takes the catalogue's analyzers; a plug-in there drives the exit code."""
    monkeypatch.setattr("bastion.catalogue.default_analyzers", lambda: (MagicAnalyzer(),))
    monkeypatch.chdir(tree.parent)
    runner = CliRunner()
    result = runner.invoke(app, ["scan", "models", "--format", "json"])
    assert result.exit_code == 1, result.output
    assert '"rule_id": "TEST-EVIL-MARK"' in result.stdout
    assert '"path": "models/a.weights"' in result.stdout
    result = runner.invoke(app, ["scan", "models", "--fail-on", "critical", "-f", "json"])
    assert result.exit_code == 0, result.output
