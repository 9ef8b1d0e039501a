"""ONNX: walk the protobuf wire format, bounded, for path traversal and custom operators.

An ONNX model is a protobuf ``ModelProto`` without a magic number. Loading it with
``onnx.load`` runs a C++ protobuf parser over hostile bytes and follows external-data paths,
so Bastion never does: a small bounded reader walks only the messages that matter (graphs,
nodes, attributes holding subgraphs, initializers, functions) and skips everything else by
offset, so tensor data is never read. It reports:

* external-data ``location`` values that are absolute, climb out with ``..`` or escape the
  model's folder through a link: loading the model would read (or, when saving, write) any
  file on the host (CWE-22; CVE-2022-25882, CVE-2024-27318 in onnx itself);
* operators from custom domains: they run only with a custom-op shared library registered
  with the runtime, i.e. native code shipped with the model;
* malformed or oversized protobuf: lengths past the end, over-long varints, nesting too deep.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Location, Reference, Severity
from bastion.rules import Rule
from bastion.scan._binreader import (
    BinReader,
    ProtoFields,
    Truncated,
    WireError,
    capped,
    head_varint,
    opened,
)

#: Operator domains implemented inside ONNX runtimes (no custom shared library needed).
STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
    "com.microsoft", "com.microsoft.nchwc", "com.microsoft.experimental",
    "com.ms.internal.nhwc",
})
MAX_GRAPH_DEPTH = 16  # subgraphs inside If/Loop/Scan attributes, nested
MAX_FIELDS = 5_000_000  # protobuf fields visited per file
MAX_TEXT = 4_096  # bytes kept of a name, domain or path; longer ones are cut
MAX_METADATA = 1_024  # metadata_props entries kept
MAX_LOCATION = 65_536  # bytes of an external-data path checked; longer ones are reported
MAX_IR_VERSION = 64

_REFS = ("ML06", "AML.T0010")


def _refs(*ids: str) -> tuple[Reference, ...]:
    return tuple(Reference.of(i) for i in ids)


EXTERNAL_DATA_TRAVERSAL = Rule(
    id="ONNX-EXTERNAL-DATA-TRAVERSAL", title="ONNX external data path escapes the model folder",
    severity=Severity.HIGH, category=Category.INTEGRITY,
    description=(
        "A tensor's external-data `location` is absolute, contains `..`, or leads out of the "
        "model's folder through a link. Loading the model reads that file into the tensor "
        "(disclosure of host files such as keys); tools that save it may write there."),
    remediation=("Keep external data files next to the model and reference them by plain "
                 "relative names; re-save with `onnx.save(..., save_as_external_data=True)`."),
    references=_refs(*_REFS, "CWE-22", "CVE-2022-25882", "CVE-2024-27318"),
)
CUSTOM_OPERATOR = Rule(
    id="ONNX-CUSTOM-OPERATOR", title="ONNX model uses operators from a custom domain",
    severity=Severity.MEDIUM, category=Category.CODE_EXECUTION,
    description=(
        "Nodes use an operator domain that no ONNX runtime implements itself. Such a model "
        "runs only after a custom-operator shared library is registered with the runtime: "
        "native code that ships with, or is fetched for, the model."),
    remediation=("Load custom-operator libraries only from a trusted, reviewed build; prefer "
                 "models that use standard operators."),
    references=_refs(*_REFS, "AML.T0011"),
)
MALFORMED = Rule(
    id="ONNX-MALFORMED", title="Malformed ONNX protobuf", severity=Severity.MEDIUM,
    category=Category.MALFORMED,
    description=(
        "The model's protobuf encoding is broken: a length past the end of its message, a "
        "varint longer than 10 bytes, an invalid wire type or a truncated file. Parsers differ "
        "on such input, and the C++ parser of the runtime is an attack surface."),
    remediation="Re-export the model from its source framework, or obtain it again.",
    references=_refs(*_REFS, "CWE-20"),
)
LIMIT_EXCEEDED = Rule(
    id="ONNX-LIMIT-EXCEEDED", title="ONNX model beyond Bastion's bounds",
    severity=Severity.MEDIUM, category=Category.RESOURCE,
    description=(
        "Subgraphs nest deeper, or the protobuf holds more fields, than any real model. The "
        "scan stopped there, so the rest of the model was not checked."),
    remediation="Check where the model comes from before loading it.",
    references=_refs(*_REFS, "CWE-770"),
)

RULES: tuple[Rule, ...] = (EXTERNAL_DATA_TRAVERSAL, CUSTOM_OPERATOR, MALFORMED, LIMIT_EXCEEDED)

# ModelProto fields and their wire types, for the content sniff.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_VARINT, _LEN = 0, 2


@dataclass(frozen=True)
class ExternalData:
    tensor: str
    location: str
    offset: int  # of the tensor in the model file


@dataclass
class OnnxModel:
    """What the walk extracted: enough for findings and for an inventory (SBOM)."""

    ir_version: int | None = None
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    #: (domain, op_type) -> file offset of the first node using it.
    operators: dict[tuple[str, str], int] = field(default_factory=dict)
    functions: set[tuple[str, str]] = field(default_factory=set)
    external_data: list[ExternalData] = field(default_factory=list)
    missing_locations: list[tuple[str, int]] = field(default_factory=list)


class _Walker(ProtoFields):
    """Visits the messages of a ModelProto that matter, skipping the rest by offset."""

    def __init__(self, reader: BinReader) -> None:
        super().__init__(reader, MAX_FIELDS, MAX_TEXT)
        self.model = OnnxModel()

    # -- messages ----------------------------------------------------------------------------

    def model_proto(self) -> None:
        m = self.model
        for number, wire, value in self.fields_of(self.r.size):
            if wire == _VARINT and number == 1:
                m.ir_version = value
            elif wire == _VARINT and number == 5:
                m.model_version = value
            elif wire != _LEN:
                continue
            elif number in (2, 3, 4):
                text = self.text(value)
                setattr(m, {2: "producer_name", 3: "producer_version", 4: "domain"}[number], text)
            elif number == 7:
                self.graph(self.sub_end(value), 0)
            elif number == 8:
                self.opset(self.sub_end(value), m.opsets)
            elif number == 14 and len(m.metadata) < MAX_METADATA:
                key, val = self.entry(self.sub_end(value))
                m.metadata[key] = val
            elif number == 20:  # TrainingInfoProto: initialization and algorithm graphs
                for sub, sub_wire, size in self.fields_of(self.sub_end(value)):
                    if sub in (1, 2) and sub_wire == _LEN:
                        self.graph(self.sub_end(size), 0)
            elif number == 25:
                self.function(self.sub_end(value))

    def opset(self, end: int, into: dict[str, int]) -> None:
        domain, version = "", 0
        for number, wire, value in self.fields_of(end):
            if number == 1 and wire == _LEN:
                domain = self.text(value)
            elif number == 2 and wire == _VARINT:
                version = value
        into[domain] = version

    def entry(self, end: int, value_limit: int = MAX_TEXT) -> tuple[str, str]:
        """A StringStringEntryProto: (key, value); a value over the limit ends in NUL."""
        key = value = ""
        for number, wire, size in self.fields_of(end):
            if number == 1 and wire == _LEN:
                key = self.text(size)
            elif number == 2 and wire == _LEN:
                value = self.r.read(min(size, value_limit)).decode("utf-8", "replace")
                if size > value_limit:  # cannot be checked whole: make it fail the check
                    value += "\0"
        return key, value

    def graph(self, end: int, depth: int) -> None:
        if depth >= MAX_GRAPH_DEPTH:
            raise WireError(f"subgraphs nested deeper than {MAX_GRAPH_DEPTH}", self.r.pos,
                            limit=True)
        for number, wire, size in self.fields_of(end):
            if wire != _LEN:
                continue
            if number == 1:
                self.node(self.sub_end(size), depth)
            elif number == 5:
                self.tensor(self.sub_end(size))
            elif number == 15:
                self.sparse_tensor(self.sub_end(size))

    def node(self, end: int, depth: int) -> None:
        at = self.r.pos
        op_type = domain = ""
        for number, wire, size in self.fields_of(end):
            if wire != _LEN:
                continue
            if number == 4:
                op_type = self.text(size)
            elif number == 7:
                domain = self.text(size)
            elif number == 5:
                self.attribute(self.sub_end(size), depth)
        self.model.operators.setdefault((domain, op_type), at)

    def attribute(self, end: int, depth: int) -> None:
        for number, wire, size in self.fields_of(end):
            if wire != _LEN:
                continue
            if number in (5, 10):  # t, tensors
                self.tensor(self.sub_end(size))
            elif number in (6, 11):  # g, graphs
                self.graph(self.sub_end(size), depth + 1)
            elif number in (22, 23):  # sparse_tensor, sparse_tensors
                self.sparse_tensor(self.sub_end(size))

    def sparse_tensor(self, end: int) -> None:
        for number, wire, size in self.fields_of(end):
            if number in (1, 2) and wire == _LEN:  # values, indices
                self.tensor(self.sub_end(size))

    def tensor(self, end: int) -> None:
        """Record every ``location`` entry: readers disagree on which of two wins."""
        at = self.r.pos
        name = ""
        locations: list[str] = []
        external = False
        for number, wire, value in self.fields_of(end):
            if number == 8 and wire == _LEN:
                name = self.text(value)
            elif number == 13 and wire == _LEN:
                key, val = self.entry(self.sub_end(value), MAX_LOCATION)
                if key == "location":
                    locations.append(val)
            elif number == 14 and wire == _VARINT:
                external = value == 1
        for location in locations:
            self.model.external_data.append(ExternalData(name, location, at))
        if external and not locations:
            self.model.missing_locations.append((name, at))

    def function(self, end: int) -> None:
        name = domain = ""
        for number, wire, size in self.fields_of(end):
            if wire != _LEN:
                continue
            if number == 1:
                name = self.text(size)
            elif number == 10:
                domain = self.text(size)
            elif number == 7:
                self.node(self.sub_end(size), 0)
            elif number == 11:
                self.attribute(self.sub_end(size), 0)
        self.model.functions.add((domain, name))


def parse_model(reader: BinReader) -> tuple[OnnxModel, WireError | None]:
    """Walk a ModelProto; returns what was extracted and the problem that stopped it."""
    walker = _Walker(reader)
    try:
        walker.model_proto()
    except WireError as exc:
        return walker.model, exc
    except Truncated as exc:
        return walker.model, WireError(f"truncated: {exc}", reader.pos)
    return walker.model, None


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def traversal(location: str, model_path: Path | None) -> str | None:
    """Why an external-data location escapes the model's folder, or None when it stays."""
    if "\0" in location:
        return "contains a NUL byte or is too long to check"
    if (location.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(location)
            or PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", location):
        return "climbs out of the model folder with '..'"
    if model_path is None:
        return None
    try:
        folder = model_path.parent.resolve()
        candidate = model_path.parent / location
        if os.path.lexists(candidate) and not candidate.resolve().is_relative_to(folder):
            return f"resolves through a link to {candidate.resolve()}"
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def _sniff(head: bytes, size: int) -> bool:
    """ModelProto fields from byte 0: ir_version first, then known fields, readable names.

    ``onnx.save`` writes fields in number order, so a model starts with ``ir_version``
    (tag 0x08); the first two fields must fit the schema and the file. Later damage is
    the analysis's to report, not a reason to leave the file unchecked.
    """
    pos = seen = 0
    while seen < 2 and pos < len(head):
        tag, pos = head_varint(head, pos)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if _MODEL_FIELDS.get(number) != wire or (seen == 0 and number != 1):
            return False
        value, pos = head_varint(head, pos)
        if value is None:
            break
        if number == 1 and not 1 <= value <= MAX_IR_VERSION:
            return False
        if wire == _LEN:
            if value > size - pos:
                return False
            text = head[pos:pos + value].decode("utf-8", "replace")
            if number in (2, 3, 4) and not text.isprintable():
                return False
            pos += value
        seen += 1
    return seen >= 2


class OnnxAnalyzer:
    """Bounded ONNX protobuf walk: external-data traversal, custom operator domains."""

    name = "onnx"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return target.head[:1] == b"\x08" and _sniff(target.head, target.size)

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return capped(self._analyze(target), RULES, target.location)

    def _analyze(self, target: Target) -> Iterator[Finding]:
        loc = target.location
        with opened(target) as stream:
            model, problem = parse_model(BinReader(stream, target.size))
        if problem is not None:
            rule = LIMIT_EXCEEDED if problem.limit else MALFORMED
            yield rule.finding(loc.at(offset=problem.offset), problem.message)
        on_disk = Path(loc.path) if not loc.members and target.depth == 0 else None
        for ext in model.external_data:
            why = traversal(ext.location, on_disk)
            if why is not None:
                yield EXTERNAL_DATA_TRAVERSAL.finding(
                    loc.at(offset=ext.offset),
                    f"tensor {ext.tensor!r}: external data location {why}: {ext.location!r:.300}",
                    evidence=ext.location, properties={"tensor": ext.tensor})
        for name, offset in model.missing_locations:
            yield MALFORMED.finding(
                loc.at(offset=offset), f"tensor {name!r} is marked external but names no "
                "location", severity=Severity.LOW, evidence=name)
        yield from self._custom_domains(model, loc)

    @staticmethod
    def _custom_domains(model: OnnxModel, loc: Location) -> Iterator[Finding]:
        used: dict[str, list[str]] = {}
        first: dict[str, int] = {}
        for (domain, op_type), offset in model.operators.items():
            if domain in STANDARD_DOMAINS or (domain, op_type) in model.functions:
                continue  # a model-local function is ONNX nodes, not native code
            used.setdefault(domain, []).append(op_type)
            first.setdefault(domain, offset)
        for domain, ops in sorted(used.items()):
            yield CUSTOM_OPERATOR.finding(
                loc.at(offset=first[domain]),
                f"operators {', '.join(sorted(ops)[:20])} from custom domain {domain!r}",
                evidence=domain, properties={"domain": domain, "op_types": sorted(ops)})
        local = {domain for domain, _ in model.functions}
        for domain in sorted(model.opsets):
            if domain not in STANDARD_DOMAINS and domain not in used and domain not in local:
                yield CUSTOM_OPERATOR.finding(
                    loc, f"declares custom operator domain {domain!r} (no node uses it)",
                    severity=Severity.INFO, evidence=domain, properties={"domain": domain})
