"""ONNX: a bounded protobuf walk finds path traversal and custom operators, never loads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.scan import onnx as onnx_scan
from bastion.scan._binreader import BinReader
from bastion.scan.onnx import OnnxAnalyzer, parse_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import set_external_data  # noqa: E402

ANALYZER = OnnxAnalyzer()


def ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def scan(path: Path) -> list[Finding]:
    return list(scan_paths([path], registry=Registry([ANALYZER])).findings)


def matmul_model(weight: np.ndarray | None = None, nodes: list | None = None,
                 opsets: dict[str, int] | None = None, functions: list | None = None):
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(weight if weight is not None else np.ones((4, 4), np.float32),
                                "W")
    body = nodes or [helper.make_node("MatMul", ["X", "W"], ["Z"]),
                     helper.make_node("Relu", ["Z"], ["Y"])]
    graph = helper.make_graph(body, "g", [x], [y], [w])
    imports = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()]
    return helper.make_model(graph, opset_imports=imports, producer_name="bastion-test",
                             functions=functions or [])


def write(path: Path, model) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def if_model(depth: int):
    """Nested If nodes: each then-branch holds the next If, ``depth`` levels deep."""
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])
    constant = helper.make_tensor("c", TensorProto.FLOAT, [1],
                                  np.ones(1, np.float32).tobytes(), raw=True)
    leaf = helper.make_graph([helper.make_node("Constant", [], ["Y"], value=constant)],
                             "leaf", [], [out])
    inner = leaf
    for level in range(depth):
        node = helper.make_node("If", ["cond"], ["Y"], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([node], f"g{level}", [], [out])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    graph = helper.make_graph(list(inner.node), "main", [cond], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


# -- clean models ----------------------------------------------------------------------------


def test_onnx_save_model_is_claimed_and_clean(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    onnx.save(matmul_model(), str(path))
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes(), Location(path="m")))
    assert scan(path) == []


def test_external_data_model_inside_its_folder_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save(matmul_model(np.ones((64, 64), np.float32)), str(path),
              save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    assert (path.parent / "weights.bin").exists()
    found = [f for f in scan(path.parent) if f.severity > Severity.INFO]
    assert found == []
    with path.open("rb") as stream:
        model, problem = parse_model(BinReader(stream, path.stat().st_size))
    assert problem is None
    assert [e.location for e in model.external_data] == ["weights.bin"]
    assert model.producer_name == "bastion-test"
    assert model.opsets == {"": 17}
    assert ("", "MatMul") in model.operators


def test_nested_subgraphs_within_bound_are_clean(tmp_path: Path) -> None:
    assert scan(write(tmp_path / "if.onnx", if_model(4))) == []


def test_microsoft_contrib_operator_is_not_custom(tmp_path: Path) -> None:
    nodes = [helper.make_node("FusedMatMul", ["X", "W"], ["Y"], domain="com.microsoft")]
    model = matmul_model(nodes=nodes, opsets={"": 17, "com.microsoft": 1})
    assert scan(write(tmp_path / "ms.onnx", model)) == []


def test_model_local_function_is_not_custom(tmp_path: Path) -> None:
    fn = helper.make_function("local.fn", "Double", ["a"], ["b"],
                              [helper.make_node("Add", ["a", "a"], ["b"])],
                              [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Z"]),
             helper.make_node("Double", ["Z"], ["Y"], domain="local.fn")]
    model = matmul_model(nodes=nodes, opsets={"": 17, "local.fn": 1}, functions=[fn])
    assert scan(write(tmp_path / "fn.onnx", model)) == []


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x01\x12\x80\x01\n\x0e\n\x05serve" + b"\0" * 200,  # TF SavedModel-like
        b"\x08\x07\xff\xee" + bytes(range(60)),  # a plausible first field, then noise
        b"\x08\x00\x12\x02ab",  # ir_version 0
        b"\x08\x07\x12\x05a\x01bcd",  # producer name with control characters
        b"\x80\x04\x95" + b"\0" * 40,
        b"PK\x03\x04" + b"\0" * 40,
        b"\x08",
    ],
)
def test_does_not_claim_other_content(data: bytes) -> None:
    assert not ANALYZER.claims(Target.from_bytes(data, Location(path="x")))


# -- path traversal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("../../../etc/passwd", "'..'"),
        ("sub/../../secret.bin", "'..'"),
        ("..\\..\\secret.bin", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("\\\\server\\share\\w.bin", "absolute"),
        ("weights.bin\0.txt", "NUL"),
    ],
)
def test_external_data_traversal(tmp_path: Path, location: str, why: str) -> None:
    """Technique: external-data location escaping the model folder (CWE-22)."""
    model = matmul_model()
    set_external_data(model.graph.initializer[0], location=location)
    model.graph.initializer[0].ClearField("raw_data")
    found = scan(write(tmp_path / "evil.onnx", model))
    assert ids(found) == ["ONNX-EXTERNAL-DATA-TRAVERSAL"]
    assert found[0].severity is Severity.HIGH
    assert why in found[0].message
    assert found[0].properties["tensor"] == "W"


def test_second_location_entry_is_checked_too(tmp_path: Path) -> None:
    """Technique: two location entries; a reader taking the first sees a benign name."""
    model = matmul_model()
    tensor = model.graph.initializer[0]
    set_external_data(tensor, location="weights.bin")
    tensor.ClearField("raw_data")
    extra = tensor.external_data.add()
    extra.key, extra.value = "location", "../../home/user/.ssh/id_rsa"
    found = scan(write(tmp_path / "two.onnx", model))
    assert [f.evidence for f in found] == ["../../home/user/.ssh/id_rsa"]


def test_location_too_long_to_check(tmp_path: Path) -> None:
    """Technique: push the '..' past any prefix a checker reads."""
    model = matmul_model()
    set_external_data(model.graph.initializer[0], location="a/" * 40_000 + "../../../etc/passwd")
    model.graph.initializer[0].ClearField("raw_data")
    found = scan(write(tmp_path / "long.onnx", model))
    assert ids(found) == ["ONNX-EXTERNAL-DATA-TRAVERSAL"]
    assert "too long" in found[0].message


def test_external_data_through_symlink_out_of_folder(tmp_path: Path) -> None:
    """Technique: a plain relative name that is a link pointing outside the folder."""
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"\0" * 64)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").symlink_to(secret)
    model = matmul_model()
    set_external_data(model.graph.initializer[0], location="weights.bin")
    model.graph.initializer[0].ClearField("raw_data")
    found = scan(write(folder / "model.onnx", model))
    assert ids(found) == ["ONNX-EXTERNAL-DATA-TRAVERSAL"]
    assert "link" in found[0].message


def test_traversal_hidden_in_constant_attribute_of_a_subgraph(tmp_path: Path) -> None:
    """Technique: the external tensor sits in a Constant node inside an If branch."""
    model = if_model(2)

    def then_branch(node):
        return next(a.g for a in node.attribute if a.name == "then_branch")

    leaf = then_branch(then_branch(model.graph.node[0]).node[0])
    set_external_data(leaf.node[0].attribute[0].t, location="/proc/self/environ")
    found = scan(write(tmp_path / "deep.onnx", model))
    assert ids(found) == ["ONNX-EXTERNAL-DATA-TRAVERSAL"]
    assert "/proc/self/environ" in found[0].message


def test_external_tensor_without_location(tmp_path: Path) -> None:
    model = matmul_model()
    model.graph.initializer[0].data_location = TensorProto.EXTERNAL
    found = scan(write(tmp_path / "noloc.onnx", model))
    assert ids(found) == ["ONNX-MALFORMED"]
    assert found[0].severity is Severity.LOW


# -- custom operators ------------------------------------------------------------------------


def test_custom_operator_domain(tmp_path: Path) -> None:
    """Technique: a node only a custom-op shared library implements (native code)."""
    nodes = [helper.make_node("MatMul", ["X", "W"], ["Z"]),
             helper.make_node("Backdoor", ["Z"], ["Y"], domain="com.evil.ops")]
    model = matmul_model(nodes=nodes, opsets={"": 17, "com.evil.ops": 1})
    found = scan(write(tmp_path / "custom.onnx", model))
    assert ids(found) == ["ONNX-CUSTOM-OPERATOR"]
    assert found[0].severity is Severity.MEDIUM
    assert found[0].properties == {"domain": "com.evil.ops", "op_types": ["Backdoor"]}


def test_declared_but_unused_custom_domain_is_info(tmp_path: Path) -> None:
    model = matmul_model(opsets={"": 17, "ai.onnx.contrib": 1})
    found = scan(write(tmp_path / "decl.onnx", model))
    assert [(f.rule_id, f.severity) for f in found] == [("ONNX-CUSTOM-OPERATOR", Severity.INFO)]


# -- malformed and oversized protobuf --------------------------------------------------------


def test_truncated_model(tmp_path: Path) -> None:
    data = matmul_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) - 30])
    found = scan(path)
    assert ids(found) == ["ONNX-MALFORMED"]
    assert "past the end" in found[0].message


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x08\x08\x12\x04test\x3a\xff\x7f" + b"\0" * 10, "runs past the end"),
        (b"\x08\x08\x12\x04test\x28" + b"\xff" * 12 + b"\x01", "longer than 10 bytes"),
        (b"\x08\x08\x12\x04test\x3f" + b"\0" * 10, "invalid wire type"),
        (b"\x08\x08\x12\x04test\x00\x00", "field number 0"),
    ],
)
def test_malformed_wire_format(tmp_path: Path, data: bytes, needle: str) -> None:
    """Technique: protobuf that parsers disagree on (lengths, varints, wire types)."""
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    assert ANALYZER.claims(Target.from_bytes(data, Location(path="x")))
    found = scan(path)
    assert ids(found) == ["ONNX-MALFORMED"]
    assert needle in found[0].message


def test_subgraphs_nested_too_deep(tmp_path: Path) -> None:
    """Technique: If inside If inside If..., to exhaust a recursive parser's stack."""
    found = scan(write(tmp_path / "deep.onnx", if_model(onnx_scan.MAX_GRAPH_DEPTH + 2)))
    assert ids(found) == ["ONNX-LIMIT-EXCEEDED"]


def test_field_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_scan, "MAX_FIELDS", 10)
    found = scan(write(tmp_path / "m.onnx", matmul_model()))
    assert ids(found) == ["ONNX-LIMIT-EXCEEDED"]


def test_never_reads_tensor_data() -> None:
    """An 8 MiB initializer is skipped by offset, not read."""
    data = matmul_model(np.ones((1024, 2048), np.float32)).SerializeToString()
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            chunk = super().read(n)
            reads.append(len(chunk))
            return chunk

    target = Target(Location(path="big.onnx"), len(data), data[:4096], lambda: Counting(data))
    assert ANALYZER.claims(target)
    assert list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER])))) == []
    assert sum(reads) < 2**18


def test_mutated_files_never_raise() -> None:
    """Fail closed: damaged protobuf becomes findings, never exceptions."""
    from tests.scan.test_safetensors import mutations

    data = if_model(3).SerializeToString() + matmul_model().SerializeToString()[2:]
    ctx = Context(registry=Registry([ANALYZER]))
    claimed = 0
    for sample in mutations(data, 400, seed=5):
        target = Target.from_bytes(sample, Location(path="fuzz"))
        if ANALYZER.claims(target):
            claimed += 1
            list(ANALYZER.analyze(target, ctx))
    assert claimed > 100
