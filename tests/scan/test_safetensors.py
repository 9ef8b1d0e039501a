"""Safetensors header validation: real files pass clean, every crafted header is reported."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.policy import Limits, Policy
from bastion.scan import safetensors as st
from bastion.scan.safetensors import SafetensorsAnalyzer

ANALYZER = SafetensorsAnalyzer()


def scan(path: Path) -> list[Finding]:
    return list(scan_paths([path], registry=Registry([ANALYZER])).findings)


def raw_file(path: Path, header: Any, data: bytes = b"", *, raw: bytes | None = None) -> Path:
    """A safetensors file written by hand: the only way to make the hostile ones."""
    body = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + data)
    return path


def ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def one_tensor(dtype: str = "F32", shape: Any = (2,), offsets: Any = (0, 8)) -> dict[str, Any]:
    return {"t": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


# -- real files ------------------------------------------------------------------------------


def test_numpy_save_file_is_clean(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file(
        {
            "w": np.ones((3, 4), np.float32),
            "b": np.zeros(4, np.float16),
            "ids": np.arange(7, dtype=np.int64),
            "mask": np.array([True, False]),
            "empty": np.zeros((0, 5), np.float64),
            "u8": np.arange(3, dtype=np.uint8),
        },
        str(path),
        metadata={"format": "np", "note": "see https://example.org for details"},
    )
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes(), Location(path="m")))
    assert scan(path) == []


def test_torch_save_file_is_clean(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tensors = {
        "embed": torch.randn(8, 4),
        "bf16": torch.ones(3, 3, dtype=torch.bfloat16),
        "i32": torch.arange(5, dtype=torch.int32),
        "f8": torch.zeros(4, dtype=torch.float8_e4m3fn),
        "scalar": torch.tensor(1.5),
    }
    path = tmp_path / "torch.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert scan(path) == []


def test_empty_file_of_tensors_is_clean(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "empty.safetensors"
    save_file({}, str(path))
    assert scan(path) == []


def test_subbyte_f4_with_whole_bytes_is_clean(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "f4.st", one_tensor("F4", (4,), (0, 2)), b"\0\0")
    assert scan(path) == []


def test_leading_whitespace_header_is_claimed_and_clean(tmp_path: Path) -> None:
    body = b"  " + json.dumps(one_tensor()).encode()
    path = raw_file(tmp_path / "ws.st", None, b"\0" * 8, raw=body)
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes(), Location(path="x")))
    assert scan(path) == []


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + b"\0" * 40,  # zip
        b"\x80\x04\x95" + b"\0" * 40,  # pickle
        struct.pack("<Q", 20) + b"[1, 2, 3]" + b"\0" * 20,  # JSON but not an object
        b"GGUF" + b"\0" * 40,
        b"short",
    ],
)
def test_does_not_claim_other_content(data: bytes) -> None:
    assert not ANALYZER.claims(Target.from_bytes(data, Location(path="x")))


# -- header bounds ---------------------------------------------------------------------------


def test_header_length_over_policy_limit(tmp_path: Path) -> None:
    """Technique: a giant declared header length to exhaust loader memory."""
    path = tmp_path / "big.st"
    path.write_bytes(struct.pack("<Q", 2 * 2**20) + b'{"a": 1}')
    policy = Policy(limits=Limits(max_header_size=2**20))
    report = scan_paths([path], policy, registry=Registry([ANALYZER]))
    assert ids(list(report.findings)) == ["SAFETENSORS-HEADER-TOO-LARGE"]
    assert report.findings[0].severity is Severity.HIGH


def test_header_past_end_of_file(tmp_path: Path) -> None:
    """Technique: header length pointing outside the file (out-of-bounds read)."""
    path = tmp_path / "trunc.st"
    path.write_bytes(struct.pack("<Q", 5000) + b'{"t": {"dtype": "F32"}}')
    found = scan(path)
    assert ids(found) == ["SAFETENSORS-HEADER-OUT-OF-BOUNDS"]
    assert found[0].severity is Severity.HIGH


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"t": "\xff\xfe"}', "UTF-8"),
        (b'{"t": {"dtype": "F32",}', "not valid JSON"),
        (b'{"t": NaN}', "NaN"),  # Python accepts NaN; the Rust loader does not
        (b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests too deeply"),
    ],
)
def test_invalid_header_json(tmp_path: Path, body: bytes, needle: str) -> None:
    """Technique: headers only one of two JSON parsers accepts (parser differential)."""
    path = raw_file(tmp_path / "bad.st", None, raw=body)
    found = scan(path)
    assert ids(found) == ["SAFETENSORS-HEADER-INVALID"]
    assert needle in found[0].message


def test_duplicate_key_parser_differential(tmp_path: Path) -> None:
    """Technique: the same tensor twice; first-wins and last-wins parsers disagree."""
    body = (b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},'
            b' "t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
    found = scan(raw_file(tmp_path / "dup.st", None, b"\0" * 8, raw=body))
    dup = [f for f in found if f.rule_id == "SAFETENSORS-DUPLICATE-KEY"]
    assert len(dup) == 1
    assert dup[0].severity is Severity.HIGH
    assert dup[0].evidence == "t"


# -- tensor entries --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (one_tensor("F128"), "unknown dtype"),
        (one_tensor("F32", (-2,)), "shape must be"),
        (one_tensor("F32", (True, 2)), "shape must be"),
        (one_tensor("F32", (2.0,)), "shape must be"),
        (one_tensor("F32", (2,), (8, 0)), "is after end"),
        (one_tensor("F32", (2,), (0,)), "data_offsets must be"),
        (one_tensor("F32", (3,), (0, 8)), "is 12 bytes but data_offsets span 8"),
        (one_tensor("F4", (3,), (0, 8)), "does not end on a byte"),
        (one_tensor("U8", (2**40, 2**40)), "overflows"),
        ({"t": [1, 2]}, "not an object"),
    ],
)
def test_invalid_tensor_entry(tmp_path: Path, header: dict[str, Any], needle: str) -> None:
    """Technique: shape/dtype/offset lies that mis-size a loader's buffers."""
    found = scan(raw_file(tmp_path / "t.st", header, b"\0" * 8))
    invalid = [f for f in found if f.rule_id == "SAFETENSORS-TENSOR-INVALID"]
    assert len(invalid) == 1, found
    assert needle in invalid[0].message


def test_offsets_past_the_data_area(tmp_path: Path) -> None:
    """Technique: data_offsets pointing beyond the file, for an out-of-bounds read."""
    found = scan(raw_file(tmp_path / "oob.st", one_tensor("U8", (4096,), (0, 4096)), b"\0" * 8))
    oob = [f for f in found if f.rule_id == "SAFETENSORS-OFFSETS-OUT-OF-BOUNDS"]
    assert len(oob) == 1
    assert oob[0].severity is Severity.HIGH


def test_overlapping_tensors(tmp_path: Path) -> None:
    """Technique: two tensors aliasing the same bytes."""
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    found = scan(raw_file(tmp_path / "ov.st", header, b"\0" * 12))
    assert ids(found) == ["SAFETENSORS-OFFSETS-OVERLAP"]
    assert "'b'" in found[0].message
    assert "'a'" in found[0].message


def test_gap_between_tensors(tmp_path: Path) -> None:
    """Technique: a hole in the data area to stash bytes no tensor claims."""
    header = {
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
    }
    found = scan(raw_file(tmp_path / "gap.st", header, b"\0" * 16))
    assert ids(found) == ["SAFETENSORS-UNCOVERED-DATA"]
    assert found[0].evidence == "gap [4, 12]"


def test_appended_zip_polyglot(tmp_path: Path) -> None:
    """Technique: a valid safetensors file with a zip (e.g. a pickle archive) appended."""
    from safetensors.numpy import save_file

    path = tmp_path / "poly.safetensors"
    save_file({"w": np.ones(4, np.float32)}, str(path))
    extra = io.BytesIO()
    with zipfile.ZipFile(extra, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\n.")
    path.write_bytes(path.read_bytes() + extra.getvalue())
    found = scan(path)
    assert ids(found) == ["SAFETENSORS-UNCOVERED-DATA"]
    assert found[0].properties["trailing_bytes"] == len(extra.getvalue())


@pytest.mark.parametrize(
    ("meta", "needle"),
    [({"format": 1}, "not a string"), (["a"], "not an object"), ("x", "not an object")],
)
def test_invalid_metadata(tmp_path: Path, meta: Any, needle: str) -> None:
    """Technique: non-string metadata that the reference loader refuses."""
    header = {"__metadata__": meta, **one_tensor()}
    found = scan(raw_file(tmp_path / "m.st", header, b"\0" * 8))
    assert ids(found) == ["SAFETENSORS-METADATA-INVALID"]
    assert needle in found[0].message


def test_null_metadata_is_accepted(tmp_path: Path) -> None:
    header = {"__metadata__": None, **one_tensor()}
    assert scan(raw_file(tmp_path / "m.st", header, b"\0" * 8)) == []


def test_rank_over_bound(tmp_path: Path) -> None:
    """Technique: thousands of unit dimensions to blow up shape handling."""
    header = one_tensor("U8", [1] * 1000, (0, 1))
    found = scan(raw_file(tmp_path / "rank.st", header, b"\0"))
    assert ids(found) == ["SAFETENSORS-LIMIT-EXCEEDED"]


def test_tensor_count_over_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Technique: a header declaring more tensors than any model holds."""
    monkeypatch.setattr(st, "MAX_TENSORS", 3)
    header = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]}
              for i in range(5)}
    found = scan(raw_file(tmp_path / "many.st", header, b"\0" * 5))
    assert "SAFETENSORS-LIMIT-EXCEEDED" in ids(found)


def test_findings_are_capped_per_rule(tmp_path: Path) -> None:
    header = {f"t{i}": {"dtype": "NOPE", "shape": [1], "data_offsets": [i, i + 1]}
              for i in range(100)}
    found = scan(raw_file(tmp_path / "cap.st", header, b"\0" * 100))
    assert len(found) == 26
    assert [f.properties["omitted"] for f in found if "omitted" in f.properties] == [75]


def test_reads_only_the_header() -> None:
    """The data area is never read: a 64 MiB model costs one small header read."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [64 * 2**20],
                               "data_offsets": [0, 64 * 2**20]}}).encode()
    prefix = struct.pack("<Q", len(header)) + header
    size = len(prefix) + 64 * 2**20
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            reads.append(len(data))
            return data

    target = Target(Location(path="big"), size, prefix, lambda: Counting(prefix), 0)
    found = list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER]))))
    assert found == []
    assert sum(reads) <= len(prefix)


def mutations(data: bytes, count: int, seed: int) -> list[bytes]:
    """Deterministic random damage: byte flips, cuts, insertions, planted huge integers."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(buf))
            choice = rng.random()
            if choice < 0.5:
                buf[i] = rng.randrange(256)
            elif choice < 0.7:
                del buf[i:]
            elif choice < 0.85:
                buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                buf[i:i + 8] = struct.pack("<Q", rng.choice([0, 2**31, 2**63, 2**64 - 1]))
            if not buf:
                buf = bytearray(b"\0")
        out.append(bytes(buf))
    return out


def test_mutated_files_never_raise() -> None:
    """Fail closed: damaged headers become findings, never exceptions."""
    from safetensors.numpy import save

    data = save({"a": np.ones((3, 4), np.float32), "b": np.arange(5)}, metadata={"k": "v"})
    ctx = Context(registry=Registry([ANALYZER]))
    claimed = 0
    for sample in mutations(data, 400, seed=7):
        target = Target.from_bytes(sample, Location(path="fuzz"))
        if ANALYZER.claims(target):
            claimed += 1
            list(ANALYZER.analyze(target, ctx))
    assert claimed > 100


def test_absurd_header_length_is_claimed_and_reported(tmp_path: Path) -> None:
    """A 2**62-byte header length in front of a JSON header: a memory-exhaustion attempt on
    loaders that allocate the declared length, reported rather than skipped."""
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b'{"w": {"dtype": "F32", "shape": [1], '
                     b'"data_offsets": [0, 4]}}' + b"\0" * 4)
    from bastion.scan import scan_path

    findings = scan_path(path).findings
    assert [(f.rule_id, f.severity.value) for f in findings] == [
        ("SAFETENSORS-HEADER-TOO-LARGE", "high")]
