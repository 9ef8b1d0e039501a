"""TensorFlow SavedModel (``saved_model.pb``) and Keras ``keras_metadata.pb``.

A SavedModel is a graph of ops that TensorFlow runs when a signature is served: no Python
is unpickled, but some ops reach outside the graph. ``ReadFile``/``WriteFile``, dataset
readers and writers and summary writers touch the file system with paths the model's
author chose; debug ops stream tensors to ``grpc://`` or ``file://`` URLs; ``PyFunc`` ops
call back into Python. Checkpoint ops (``SaveV2``, ``RestoreV2``, ``MergeV2Checkpoints``)
are in every SavedModel and are not reported.

The protobuf is walked with :mod:`bastion.scan._protowire` along the fields that hold ops
(field numbers from tensorflow/core/protobuf/saved_model.proto, meta_graph.proto,
saved_object_graph.proto and core/framework/graph.proto, node_def.proto, function.proto):
``SavedModel.meta_graphs(2)`` → ``MetaGraphDef.graph_def(2)`` → ``GraphDef.node(1)`` and
``GraphDef.library(2).function(1).node_def(3)`` → ``NodeDef.op(2)``, plus the op list in
``meta_info_def(1).stripped_op_list(2)``. Keras layer metadata, kept as JSON in
``object_graph_def(7).nodes(1).user_object(4).metadata(3)`` or in ``keras_metadata.pb``
(``nodes(1).metadata(5)``), is checked like any Keras config: Keras rebuilds Lambda layers
from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Reference, Severity
from bastion.rules import Rule
from bastion.scan import keras
from bastion.scan._protowire import LEN, Field, Reader, WireError, WireLimit

_REF_IDS = ("ML06", "AML.T0010", "AML.T0011")


def _refs(*ids: str) -> tuple[Reference, ...]:
    return tuple(Reference.of(ref) for ref in ids)


PYTHON_OP = Rule(
    id="SAVEDMODEL-PYTHON-OP", title="SavedModel graph calls back into Python",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description=(
        "PyFunc, PyFuncStateless and EagerPyFunc ops run a Python function registered in the "
        "loading process. They cannot be served portably, so in a shared model they point at "
        "a graph built to reach Python code the author expects to be present."
    ),
    remediation="Do not serve the model; re-export it without tf.py_function/numpy_function.",
    references=_refs(*_REF_IDS, "CWE-94"),
)
FILE_OP = Rule(
    id="SAVEDMODEL-FILE-ACCESS", title="SavedModel graph reads or writes files",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description=(
        "The graph holds ops that read, list or write files at paths set inside the model "
        "(ReadFile, WriteFile, MatchingFiles, ImmutableConst, dataset readers and writers, "
        "summary writers, PrintV2 to a file). Serving the model would read secrets or "
        "overwrite files with the server's permissions. Checkpoint ops are not counted."
    ),
    remediation="Do not serve the model until the ops and their paths are explained.",
    references=_refs(*_REF_IDS, "CWE-73"),
)
NETWORK_OP = Rule(
    id="SAVEDMODEL-NETWORK-ACCESS", title="SavedModel graph sends data off the machine",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description=(
        "Debug ops with debug URLs stream tensor values to grpc:// or file:// endpoints, and "
        "tf.data service ops connect to a dispatcher: inputs and weights can leave the host."
    ),
    remediation="Do not serve the model; re-export it without debug or data-service ops.",
    references=_refs(*_REF_IDS, "CWE-200"),
)
MALFORMED = Rule(
    id="SAVEDMODEL-MALFORMED", title="SavedModel protobuf does not parse",
    severity=Severity.HIGH, category=Category.MALFORMED,
    description=(
        "The file starts like a SavedModel but its protobuf is truncated, inconsistent or "
        "larger than the scan limits; the ops after the fault were not checked."
    ),
    remediation="Treat the model as untrusted; re-export it from its source.",
)

RULES: tuple[Rule, ...] = (PYTHON_OP, FILE_OP, NETWORK_OP, MALFORMED, *keras.RULES)

_PYTHON = ("PyFunc", "PyFuncStateless", "EagerPyFunc")
_FILE = (
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "LoadAndRemapMatrix",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader",
    "TFRecordReaderV2", "LMDBReader", "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2",
    "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset", "LMDBDataset",
    "ExperimentalLMDBDataset", "LoadDataset", "MatchingFilesDataset",
    "ExperimentalMatchingFilesDataset", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "SaveDataset", "SaveDatasetV2", "SnapshotDataset", "SnapshotDatasetV2",
)
_SUMMARY = (
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "WriteRawProtoSummary", "ImportEvent",
)
_NETWORK = (
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2", "DataServiceDataset",
    "DataServiceDatasetV2", "DataServiceDatasetV3", "DataServiceDatasetV4", "RegisterDataset",
    "RegisterDatasetV2", "DistributedSave",
)
#: Op name → (rule, severity).
OPS: dict[str, tuple[Rule, Severity]] = {
    **dict.fromkeys(_PYTHON, (PYTHON_OP, Severity.HIGH)),
    **dict.fromkeys(_FILE, (FILE_OP, Severity.HIGH)),
    **dict.fromkeys(_SUMMARY, (FILE_OP, Severity.MEDIUM)),
    **dict.fromkeys(_NETWORK, (NETWORK_OP, Severity.HIGH)),
}
#: Ops that are harmless unless an attribute points them at a file: op → (attribute,
#: values that stay inside the process).
_CONDITIONAL = {
    "PrintV2": ("output_stream", ("stderr", "stdout", "log(info)", "log(warning)",
                                  "log(error)")),
    "DecodeProtoV2": ("descriptor_source", ("local://",)),
    "EncodeProto": ("descriptor_source", ("local://",)),
}
#: Attributes worth showing as evidence.
_EVIDENCE_ATTRS = frozenset({
    "debug_urls", "output_stream", "memory_region_name", "descriptor_source", "dump_root",
    "address", "protocol", "tfdbg_context_id", "logdir",
})
_MAX_PLACES = 10
_LEN_TAGS = frozenset({0x0A, 0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A})


@dataclass
class _Use:
    places: list[str] = field(default_factory=list)
    count: int = 0
    offset: int = 0
    attrs: dict[str, str] = field(default_factory=dict)


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    return None


def looks_like_saved_model(head: bytes) -> bool:
    """``saved_model_schema_version`` (field 1) then a MetaGraphDef (field 2) that opens
    with one of its own message fields whose length fits inside it. A meta graph longer
    than the file is still claimed: a truncated SavedModel is reported, not skipped."""
    if head[:1] != b"\x08":
        return False
    version = _varint(head, 1)
    if version is None or not 0 < version[0] < 16 or head[version[1]:version[1] + 1] != b"\x12":
        return False
    outer = _varint(head, version[1] + 1)
    if outer is None or outer[1] >= len(head):
        return False
    if head[outer[1]] not in _LEN_TAGS:
        return False
    inner = _varint(head, outer[1] + 1)
    return inner is not None and inner[0] <= outer[0]


def looks_like_keras_metadata(head: bytes) -> bool:
    return head[:1] == b"\x0a" and b"_tf_keras_" in head


class SavedModelAnalyzer:
    """TensorFlow ``saved_model.pb`` graphs and Keras ``keras_metadata.pb``."""

    name = "savedmodel"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return looks_like_saved_model(target.head) or looks_like_keras_metadata(
            target.head)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        uses: dict[str, _Use] = {}
        with target.open() as stream:
            reader = Reader(stream, target.size)
            try:
                if looks_like_saved_model(target.head):
                    yield from _saved_model(reader, target, ctx, uses)
                else:
                    yield from _keras_metadata(reader, target, ctx)
            except WireLimit as exc:
                yield MALFORMED.finding(target.location, f"scan limit reached: {exc}")
            except WireError as exc:
                yield MALFORMED.finding(target.location, f"malformed protobuf: {exc}")
        yield from _op_findings(uses, target)


def _op_findings(uses: dict[str, _Use], target: Target) -> Iterator[Finding]:
    for op, use in sorted(uses.items()):
        rule, severity = OPS.get(op, (FILE_OP, Severity.HIGH))
        places = ", ".join(use.places)
        more = f" and {use.count - len(use.places)} more" if use.count > len(use.places) else ""
        attrs = "; ".join(f"{k}={v!r}" for k, v in sorted(use.attrs.items()))
        yield rule.finding(
            target.location.at(offset=use.offset),
            f"{op} op used {use.count} time(s)",
            evidence=f"{op} in {places}{more}" + (f"; {attrs}" if attrs else ""),
            severity=severity,
            properties=keras.safe_properties(
                {"op": op, "count": use.count, "places": use.places, "attrs": use.attrs}),
        )


def _saved_model(
    reader: Reader, target: Target, ctx: Context, uses: dict[str, _Use]
) -> Iterator[Finding]:
    for index, meta in enumerate(reader.messages(0, target.size, 2)):
        where = f"meta_graphs[{index}]"
        for part in reader.fields(meta.value, meta.end):
            if part.wire != LEN:
                continue
            if part.number == 1:
                _stripped_ops(reader, part, where, uses)
            elif part.number == 2:
                _graph(reader, part, where, uses)
            elif part.number == 7:
                yield from _object_graph(reader, part, target, ctx)


def _stripped_ops(reader: Reader, info: Field, where: str, uses: dict[str, _Use]) -> None:
    for ops in reader.messages(info.value, info.end, 2):
        for op_def in reader.messages(ops.value, ops.end, 1):
            for name in reader.messages(op_def.value, op_def.end, 1):
                op = reader.text(name)
                if op in OPS:
                    _record(uses, op, f"{where}.stripped_op_list", op_def.at, {})


def _graph(reader: Reader, graph: Field, where: str, uses: dict[str, _Use]) -> None:
    for part in reader.fields(graph.value, graph.end):
        if part.wire != LEN:
            continue
        if part.number == 1:
            _node(reader, part, f"{where}.graph", uses)
        elif part.number == 2:
            for function in reader.messages(part.value, part.end, 1):
                _function(reader, function, where, uses)


def _function(reader: Reader, function: Field, where: str, uses: dict[str, _Use]) -> None:
    name = "?"
    nodes: list[Field] = []
    for part in reader.fields(function.value, function.end):
        if part.wire != LEN:
            continue
        if part.number == 1:  # signature: OpDef, name is field 1
            for label in reader.messages(part.value, part.end, 1):
                name = reader.text(label, 256)
        elif part.number in (2, 3):  # node_def (3); field 2 held the pre-2017 Node form
            nodes.append(part)
            if len(nodes) >= 4096:
                for node in nodes:
                    _node(reader, node, f"{where}.function {name!r}", uses)
                nodes.clear()
    for node in nodes:
        _node(reader, node, f"{where}.function {name!r}", uses)


def _node(reader: Reader, node: Field, where: str, uses: dict[str, _Use]) -> None:
    op = label = ""
    attrs: list[Field] = []
    for part in reader.fields(node.value, node.end):
        if part.wire != LEN:
            continue
        if part.number == 1:
            label = reader.text(part, 256)
        elif part.number == 2:
            op = reader.text(part, 256)
        elif part.number == 5 and len(attrs) < 256:
            attrs.append(part)
    if op not in OPS and op not in _CONDITIONAL:
        return
    values = _attrs(reader, attrs)
    if op in _CONDITIONAL:
        key, harmless = _CONDITIONAL[op]
        if values.get(key, "") in ("", *harmless):
            return
    _record(uses, op, f"{where}: {label or '?'}", node.at, values)


def _attrs(reader: Reader, entries: list[Field]) -> dict[str, str]:
    """The string values (or string lists) of a node's attributes named in the allowlist."""
    values: dict[str, str] = {}
    for entry in entries:
        key, value = "", ""
        for part in reader.fields(entry.value, entry.end):
            if part.number == 1 and part.wire == LEN:
                key = reader.text(part, 128)
            elif part.number == 2 and part.wire == LEN:
                value = _attr_text(reader, part)
        if key in _EVIDENCE_ATTRS:
            values[key] = value
    return values


def _attr_text(reader: Reader, attr: Field) -> str:
    """AttrValue ``s`` (2) or ``list.s`` (1 → 2), as text."""
    items: list[str] = []
    for part in reader.fields(attr.value, attr.end):
        if part.number == 2 and part.wire == LEN:
            return reader.text(part, 512)
        if part.number == 1 and part.wire == LEN:
            items.extend(reader.text(s, 512) for s in reader.messages(part.value, part.end, 2))
    return ", ".join(items[:8])


def _record(uses: dict[str, _Use], op: str, place: str, offset: int,
            attrs: dict[str, str]) -> None:
    use = uses.setdefault(op, _Use(offset=offset))
    use.count += 1
    if len(use.places) < _MAX_PLACES:
        use.places.append(place)
    for key, value in attrs.items():
        use.attrs.setdefault(key, value)


def _object_graph(reader: Reader, graph: Field, target: Target, ctx: Context
                  ) -> Iterator[Finding]:
    for node in reader.messages(graph.value, graph.end, 1):
        for user in reader.messages(node.value, node.end, 4):
            for meta in reader.messages(user.value, user.end, 3):
                yield from _metadata(reader, meta, target, ctx)


def _keras_metadata(reader: Reader, target: Target, ctx: Context) -> Iterator[Finding]:
    for node in reader.messages(0, target.size, 1):
        for part in reader.fields(node.value, node.end):
            if part.number == 5 and part.wire == LEN:
                yield from _metadata(reader, part, target, ctx)


def _metadata(reader: Reader, meta: Field, target: Target, ctx: Context) -> Iterator[Finding]:
    if meta.length == 0:
        return
    location = target.location.at(offset=meta.value)
    limit = ctx.policy.limits.max_header_size
    if meta.length > limit:
        yield keras.CONFIG_LIMIT.finding(location, f"Keras metadata of {meta.length} bytes is "
                                         f"over the limit of {limit}")
        return
    yield from keras.config_findings(reader.read(meta.value, meta.length), location, ctx)
