"""The pickle machine: every technique, every protocol, benign data, bounds."""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path

import pytest
from tests.scan import payloads

from bastion.analyzer import Context, Registry
from bastion.findings import Severity
from bastion.policy import Policy, parse_policy
from bastion.scan import MODEL_ANALYZERS, scan_path
from bastion.scan.pickle import looks_like_pickle, walk_pickles


def scan_bytes(tmp_path: Path, data: bytes, policy: Policy | None = None, name: str = "m.bin"):
    path = tmp_path / name
    path.write_bytes(data)
    return scan_path(path, policy=policy or Policy())


def rule_ids(report) -> set[str]:
    return {f.rule_id for f in report.findings}


@pytest.mark.parametrize("protocol", range(6))
def test_reduce_os_system_every_protocol(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    report = scan_bytes(tmp_path, payloads.reduce_os_system(str(marker), protocol))
    critical = [f for f in report.findings if f.severity is Severity.CRITICAL]
    assert critical, report.findings
    assert critical[0].rule_id == "PICKLE-DANGEROUS-GLOBAL"
    assert critical[0].properties["name"] == "system"
    assert str(marker) in critical[0].message  # the call's argument is shown
    assert critical[0].location.offset is not None
    assert not marker.exists()


@pytest.mark.parametrize("technique", sorted(payloads.TECHNIQUES))
def test_technique_is_detected_and_never_runs(tmp_path: Path, technique: str) -> None:
    make, expected_rule = payloads.TECHNIQUES[technique]
    marker = tmp_path / f"marker-{technique}"
    report = scan_bytes(tmp_path, make(str(marker)))
    assert expected_rule in rule_ids(report), [f.to_dict() for f in report.findings]
    assert not report.passed
    assert not marker.exists()


def test_nullifai_stream_is_also_reported_malformed(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, payloads.nullifai_broken("/nonexistent/x"))
    assert {"PICKLE-DANGEROUS-GLOBAL", "PICKLE-MALFORMED"} <= rule_ids(report)


def test_dynamic_import_shows_what_feeds_it(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, payloads.stack_global_dynamic("/nonexistent/x"))
    finding = next(f for f in report.findings if f.rule_id == "PICKLE-DYNAMIC-IMPORT")
    assert "builtins.str" in (finding.evidence or "")


def test_nested_pickle_location_names_the_inner_stream(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, payloads.nested_load_from_bytes("/nonexistent/x"))
    inner = [f for f in report.findings if f.properties.get("name") == "system"]
    assert inner
    assert inner[0].location.members
    assert "bytes loaded at offset" in inner[0].location.members[-1]


def test_partial_gadget_is_suspicious_and_target_dangerous(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, payloads.partial_gadget("/nonexistent/x"))
    assert {"PICKLE-SUSPICIOUS-GLOBAL", "PICKLE-DANGEROUS-GLOBAL"} <= rule_ids(report)


@pytest.mark.parametrize(("module", "name"), [
    ("webbrowser", "open"), ("runpy", "run_path"), ("pty", "spawn"),
    ("socket", "create_connection"),
    ("ctypes", "CDLL"), ("importlib", "import_module"), ("operator", "attrgetter"),
    ("torch.hub", "load"), ("torch", "load"), ("shutil", "rmtree"), ("pdb", "Pdb"),
    ("bdb", "Bdb"), ("pydoc", "pipepager"), ("timeit", "timeit"), ("cProfile", "run"),
    ("code", "InteractiveInterpreter"), ("asyncio.subprocess", "create_subprocess_shell"),
    ("marshal", "loads"), ("pickle", "loads"), ("_pickle", "loads"), ("nt", "system"),
    ("posix", "system"), ("builtins", "exec"), ("builtins", "compile"), ("builtins", "open"),
    ("sys", "modules"), ("types", "CodeType"), ("numpy", "load"),
    ("torch.utils.cpp_extension", "load_inline"), ("builtins", "object.__subclasses__"),
])
def test_dangerous_names(tmp_path: Path, module: str, name: str) -> None:
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."
    report = scan_bytes(tmp_path, data)
    assert [f.severity for f in report.findings if f.rule_id.startswith("PICKLE-DANGEROUS")] == [
        Severity.CRITICAL], report.findings


def test_unknown_global_is_medium_and_policy_can_allow_it(tmp_path: Path) -> None:
    data = b"\x80\x02cmycompany.models\nNet\n)\x81}b."
    report = scan_bytes(tmp_path, data)
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("PICKLE-UNKNOWN-GLOBAL", Severity.MEDIUM)]
    policy = parse_policy({"allow": {"pickle-globals": ["mycompany.models.*"]}})
    assert scan_bytes(tmp_path, data, policy).findings == ()


def test_policy_allowlist_cannot_hide_dunder_traversal(tmp_path: Path) -> None:
    data = b"\x80\x04" + payloads._str("mycompany") + payloads._str("x.__globals__") + b"\x93."
    policy = parse_policy({"allow": {"pickle-globals": ["mycompany.*"]}})
    assert "PICKLE-DANGEROUS-GLOBAL" in rule_ids(scan_bytes(tmp_path, data, policy))


@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_is_clean(tmp_path: Path, protocol: int) -> None:
    import collections
    import datetime
    import decimal

    value = {"ints": list(range(300)), "f": 1.5, "s": "x" * 300, "b": b"\x00" * 300,
             "t": (1, (2, 3)), "set": {1, 2}, "fs": frozenset({3}), "none": None,
             "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list),
             "dt": datetime.datetime(2024, 1, 2), "dec": decimal.Decimal("1.5"),
             "big": 2**200, "neg": -(2**70), "nested": [[[]]], "shared": [1]}
    value["again"] = value["shared"]
    report = scan_bytes(tmp_path, pickle.dumps(value, protocol=protocol))
    assert report.findings == (), [f.to_dict() for f in report.findings]


def test_several_benign_pickles_in_one_stream_are_clean(tmp_path: Path) -> None:
    data = b"".join(pickle.dumps([i, str(i)], protocol=p) for i, p in enumerate((0, 2, 4, 5)))
    assert scan_bytes(tmp_path, data).findings == ()


def test_trailing_garbage_is_low(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, pickle.dumps([1, 2], protocol=2) + b"\x00\x01junk\xff")
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("PICKLE-TRAILING-DATA", Severity.LOW)]


def test_truncated_stream_is_malformed(tmp_path: Path) -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)[:-20]
    assert "PICKLE-MALFORMED" in rule_ids(scan_bytes(tmp_path, data))


def test_length_past_end_reads_nothing_huge(tmp_path: Path) -> None:
    # BINBYTES8 claiming 2**62 bytes: must be a finding, not an allocation.
    data = b"\x80\x04\x8e" + struct_q(2**62) + b"abc"
    assert "PICKLE-MALFORMED" in rule_ids(scan_bytes(tmp_path, data))


def struct_q(n: int) -> bytes:
    return n.to_bytes(8, "little")


def test_million_opcodes_bounded_time(tmp_path: Path) -> None:
    data = b"\x80\x02]" + b"K\x01a" * 500_000 + b"."  # 1,000,003 opcodes
    start = time.perf_counter()
    report = scan_bytes(tmp_path, data)
    assert report.findings == ()
    assert time.perf_counter() - start < 30
    limited = parse_policy({"limits": {"max-pickle-opcodes": 10_000}})
    assert rule_ids(scan_bytes(tmp_path, data, limited)) == {"PICKLE-TOO-COMPLEX"}


def test_deep_nesting_does_not_recurse(tmp_path: Path) -> None:
    data = b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b"."
    report = scan_bytes(tmp_path, data)
    assert report.findings == ()


def test_memo_get_before_put_is_malformed(tmp_path: Path) -> None:
    assert "PICKLE-MALFORMED" in rule_ids(scan_bytes(tmp_path, b"\x80\x02h\x05."))


def test_invalid_protocol_is_malformed(tmp_path: Path) -> None:
    assert "PICKLE-MALFORMED" in rule_ids(scan_bytes(tmp_path, b"\x80\x02\x80\x09N."))


@pytest.mark.parametrize("text", [
    b"hello world\n", b"col1,col2\n1,2\n", b"(defun f () nil)\n", b"cat\ndog\nbird\n",
    b"{\"json\": true}\n", b"I am a text file\n", b"Some notes\n",
])
def test_text_files_are_not_claimed(text: bytes) -> None:
    assert not looks_like_pickle(text)


def test_walk_pickles_reports_offsets() -> None:
    data = pickle.dumps(1, protocol=2) + pickle.dumps(2, protocol=2)
    results = walk_pickles(io.BytesIO(data), Context(registry=Registry(MODEL_ANALYZERS)))
    assert [r.start for r in results] == [0, len(pickle.dumps(1, protocol=2))]
    assert all(r.complete for r in results)
