"""GGUF: bounded header parsing, llama.cpp layout rules, chat-template injection (SSTI)."""

from __future__ import annotations

import importlib
import io
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bastion.analyzer import Context, Registry, Target
from bastion.engine import scan_paths
from bastion.findings import Finding, Location, Severity
from bastion.policy import Limits, Policy
from bastion.scan import chat_template
from bastion.scan.chat_template import INTERNALS, analyze_template
from bastion.scan.gguf import GGML_TYPES, GgufAnalyzer

ANALYZER = GgufAnalyzer()

# -- real-looking benign chat templates -----------------------------------------------------

LLAMA3 = """{{- bos_token }}
{%- if custom_tools is defined %}{%- set tools = custom_tools %}{%- endif %}
{%- if not date_string is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {{- "You have access to the following functions:\\n\\n" }}
    {%- for t in tools %}{{- t | tojson(indent=4) }}{{- "\\n\\n" }}{%- endfor %}
{%- endif %}
{{- system_message }}{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'
            + message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '{"name": "' + tool_call.name + '", "parameters": ' }}
        {{- tool_call.arguments | tojson }}{{- "}<|eot_id|>" }}
    {%- else %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}{{- message.content }}{%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

MISTRAL = (
    "{%- set ns = namespace(system='', found=false) %}"
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}{# a comment with __class__ is never rendered #}"
    "{% raw %}{{ literal }}{% endraw %}"
)

BENIGN = {"llama3": LLAMA3, "chatml": CHATML, "mistral": MISTRAL}

# -- template injection payloads (each names the technique) ----------------------------------

CRITICAL_TEMPLATES = {
    "cve-2024-34359-subclasses": (
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if \"warning\" in x.__name__ %}"
        "{{x()._module.__builtins__['__import__']('os').popen(\"touch /tmp/retr0reg\")}}"
        "{%endif%}{% endfor %}"),
    "lipsum-globals": "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "cycler-init-globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "joiner-init-globals": "{{ joiner.__init__.__globals__ }}",
    "namespace-init-globals": "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "template-reference-context": "{{ self._TemplateReference__context.cycler }}",
    "attr-hex-escapes": "{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "attr-unicode-escapes": "{{ ()|attr('\\u005f\\u005fclass\\u005f\\u005f') }}",
    "string-multiplication": "{{ ()|attr('_'*2 ~ 'class' ~ '_'*2) }}",
    "list-join": "{{ ()|attr(['_','_','class','_','_']|join) }}",
    "percent-c-format": "{{ ()|attr(\"%c%cclass%c%c\"|format(95,95,95,95)) }}",
    "set-variables": "{%- set a = '__cla' -%}{%- set b = 'ss__' -%}{{ ()|attr(a ~ b) }}",
    "adjacent-literals": "{{ ''['__cla' 'ss__'] }}",
    "request-attr": "{{ request|attr('application')|attr('\\x5f\\x5fglobals\\x5f\\x5f') }}",
    "dict-keyword-dunder": "{{ dict(__class__=1)|list|first }}",
    "str-format-method": "{{ ()|attr('{0}{0}class{0}{0}'.format('_')) }}",
    "percent-s-format": "{{ ()|attr('%s%sclass%s%s'|format('_', '_', '_', '_')) }}",
    "replace-filter": "{{ ()|attr('__clXass__'|replace('X', '')) }}",
    "upper-case-lowered": "{{ ()|attr('__CLASS__'|lower) }}",
}

SUSPICIOUS_TEMPLATES = {
    "os-popen-without-internals": "{{ foo.os.popen('id').read() }}",
    "attr-popen": "{{ x|attr('popen') }}",
    "attr-computed": "{{ x|attr(name) }}",
    "dunder-only-in-text": "Hello __globals__ world",
}


def string(value: str | bytes, *, v1: bool = False) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("<I" if v1 else "<Q", len(data)) + data


def kv_str(key: str, value: str) -> bytes:
    return string(key) + struct.pack("<I", 8) + string(value)


def kv_u32(key: str, value: int) -> bytes:
    return string(key) + struct.pack("<II", 4, value)


def tensor(name: str, dims: tuple[int, ...], ggml_type: int, offset: int) -> bytes:
    return (string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d)
            for d in dims) + struct.pack("<IQ", ggml_type, offset))


def build(kvs: list[bytes], tensors: list[bytes] = (), data: bytes = b"", *,  # type: ignore[assignment]
          n_kv: int | None = None, n_tensors: int | None = None, version: int = 3,
          alignment: int = 32) -> bytes:
    """A GGUF file written by hand, per the spec: the only way to make the hostile ones."""
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else
                                 n_tensors, len(kvs) if n_kv is None else n_kv)
    head += b"".join(kvs) + b"".join(tensors)
    if tensors:
        head += b"\0" * (-len(head) % alignment)
    return head + data


def scan_bytes(tmp_path: Path, data: bytes, policy: Policy | None = None) -> list[Finding]:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return list(scan_paths([path], policy or Policy(), registry=Registry([ANALYZER])).findings)


def ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id for f in findings]


def writer_file(path: Path, template: str | None = None, **extra: str) -> Path:
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    if template is not None:
        writer.add_chat_template(template)
    for key, value in extra.items():
        writer.add_string(key, value)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello"] * 50)
    writer.add_array("tokenizer.ggml.scores", [0.0] * 150)
    writer.add_tensor("token_embd.weight", np.ones((8, 32), np.float32))
    writer.add_tensor("output.weight", np.ones((4, 32), np.float16))
    writer.add_tensor("norm", np.ones(3, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- clean files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_writer_file_with_benign_template_is_clean(tmp_path: Path, name: str) -> None:
    path = writer_file(tmp_path / "m.gguf", BENIGN[name])
    assert ANALYZER.claims(Target.from_bytes(path.read_bytes(), Location(path="m")))
    assert scan_paths([path], registry=Registry([ANALYZER])).findings == ()


def test_real_big_endian_file_is_clean(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_chat_template(CHATML)
    writer.add_tensor("w", np.ones((2, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert scan_bytes(tmp_path, path.read_bytes()) == []


def test_quantized_tensors_layout_is_clean(tmp_path: Path) -> None:
    """Block-quantized tensors (Q8_0, Q4_0, Q5_1, BF16) sized and laid out as llama.cpp does."""
    gguf = pytest.importorskip("gguf")
    qtypes = gguf.GGMLQuantizationType
    path = tmp_path / "q.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    for i, qtype in enumerate([qtypes.Q8_0, qtypes.Q4_0, qtypes.Q5_1, qtypes.BF16]):
        data = gguf.quants.quantize(np.linspace(-1, 1, 3 * 256, dtype=np.float32)
                                    .reshape(3, 256), qtype)
        writer.add_tensor(f"blk.{i}.weight", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert scan_bytes(tmp_path, path.read_bytes()) == []


def test_ggml_type_table_matches_gguf_package() -> None:
    gguf = pytest.importorskip("gguf")
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(qtype)] == (qtype.name, block, size)


def test_hand_built_file_is_clean(tmp_path: Path) -> None:
    data = build([kv_str("general.architecture", "llama"), kv_str("tokenizer.chat_template",
                  CHATML)], [tensor("a", (8,), 0, 0), tensor("b", (32, 2), 8, 32)],
                 b"\0" * 32 + b"\0" * 68 + b"\0" * 28)
    assert scan_bytes(tmp_path, data) == []


def test_version_1_file_with_32_bit_lengths_is_clean(tmp_path: Path) -> None:
    kv = string("general.name", v1=True) + struct.pack("<I", 8) + string("tiny", v1=True)
    data = b"GGUF" + struct.pack("<III", 1, 0, 1) + kv
    assert scan_bytes(tmp_path, data) == []


def test_nested_arrays_within_bounds_are_clean(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)
    nested = string("x.nested") + struct.pack("<IIQ", 9, 9, 2) + inner + inner
    assert scan_bytes(tmp_path, build([nested])) == []


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_templates_raise_nothing(name: str) -> None:
    assert analyze_template(BENIGN[name]) == []


# -- chat template injection -----------------------------------------------------------------


@pytest.mark.parametrize("technique", sorted(CRITICAL_TEMPLATES))
def test_template_reaching_internals_is_critical(tmp_path: Path, technique: str) -> None:
    data = build([kv_str("tokenizer.chat_template", CRITICAL_TEMPLATES[technique])])
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-CHAT-TEMPLATE-SSTI"], technique
    assert found[0].severity is Severity.CRITICAL
    assert "CVE-2024-34359" in {r.id for r in found[0].references}


@pytest.mark.parametrize("technique", sorted(SUSPICIOUS_TEMPLATES))
def test_obfuscated_or_command_template_is_high(tmp_path: Path, technique: str) -> None:
    data = build([kv_str("tokenizer.chat_template", SUSPICIOUS_TEMPLATES[technique])])
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-CHAT-TEMPLATE-SUSPICIOUS"], technique
    assert found[0].severity is Severity.HIGH


def test_named_template_variant_is_analysed(tmp_path: Path) -> None:
    """Technique: hide the payload in tokenizer.chat_template.<name> (tool_use, rag)."""
    data = build([kv_str("tokenizer.chat_template", CHATML),
                  kv_str("tokenizer.chat_template.tool_use", CRITICAL_TEMPLATES["lipsum-globals"])])
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-CHAT-TEMPLATE-SSTI"]
    assert found[0].properties["key"] == "tokenizer.chat_template.tool_use"
    assert "lipsum" in found[0].properties["gadgets"]


def test_payload_in_real_writer_file(tmp_path: Path) -> None:
    path = writer_file(tmp_path / "evil.gguf", CRITICAL_TEMPLATES["cve-2024-34359-subclasses"])
    report = scan_paths([path], registry=Registry([ANALYZER]))
    assert [f.rule_id for f in report.findings] == ["GGUF-CHAT-TEMPLATE-SSTI"]
    assert report.findings[0].location.offset is not None


def test_duplicate_template_key_hides_second_template(tmp_path: Path) -> None:
    """Technique: a benign first template for reviewers, a malicious duplicate for loaders."""
    data = build([kv_str("tokenizer.chat_template", CHATML),
                  kv_str("tokenizer.chat_template", CRITICAL_TEMPLATES["lipsum-globals"])])
    assert sorted(ids(scan_bytes(tmp_path, data))) == [
        "GGUF-CHAT-TEMPLATE-SSTI", "GGUF-DUPLICATE-KEY"]


def test_payloads_are_valid_jinja_and_analysis_never_renders() -> None:
    """The payloads parse as Jinja (so the tests are meaningful); parsing is not rendering."""
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()
    for source in (*CRITICAL_TEMPLATES.values(), *BENIGN.values()):
        env.parse(source)


def test_analysis_works_without_jinja2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    module = importlib.reload(chat_template)
    hits = module.analyze_template(CRITICAL_TEMPLATES["string-multiplication"])
    assert [h.kind for h in hits].count(INTERNALS) == 1


def test_template_lines_are_reported() -> None:
    hits = analyze_template("{{ a }}\n\n{{ cycler.__init__ }}")
    assert [(h.detail, h.line) for h in hits] == [("attribute or name __init__", 3)]


# -- malformed and hostile headers ------------------------------------------------------------


def test_does_not_claim_other_content() -> None:
    assert not ANALYZER.claims(Target.from_bytes(b"GGML" + b"\0" * 20, Location(path="x")))
    assert not ANALYZER.claims(Target.from_bytes(b"PK\x03\x04", Location(path="x")))


def test_unsupported_version(tmp_path: Path) -> None:
    assert ids(scan_bytes(tmp_path, build([], version=7))) == ["GGUF-HEADER-INVALID"]


def test_truncated_metadata(tmp_path: Path) -> None:
    """Technique: a file cut inside its metadata, to make a loader read past its buffer."""
    data = build([kv_str("general.architecture", "llama"), kv_str("general.name", "x" * 200)])
    assert ids(scan_bytes(tmp_path, data[:-50])) == ["GGUF-TRUNCATED"]


@pytest.mark.parametrize(("n_kv", "n_tensors"), [(2**63, 0), (0, 2**40), (100_000, 0)])
def test_absurd_counts(tmp_path: Path, n_kv: int, n_tensors: int) -> None:
    """Technique: huge n_kv / n_tensors to overflow a loader's allocation (CVE-2024-21802)."""
    found = scan_bytes(tmp_path, build([], n_kv=n_kv, n_tensors=n_tensors) + b"\0" * 64)
    assert ids(found) == ["GGUF-LIMIT-EXCEEDED"]
    assert found[0].severity is Severity.HIGH


def test_absurd_string_length(tmp_path: Path) -> None:
    """Technique: a string length of 2**62 to make a loader allocate or over-read."""
    data = build([string("general.name") + struct.pack("<IQ", 8, 2**62) + b"abc"])
    assert ids(scan_bytes(tmp_path, data)) == ["GGUF-LIMIT-EXCEEDED"]


def test_deeply_nested_arrays(tmp_path: Path) -> None:
    """Technique: arrays of arrays nested without end, for stack exhaustion."""
    body = struct.pack("<IQ", 9, 1) * 50
    found = scan_bytes(tmp_path, build([string("x.deep") + struct.pack("<I", 9) + body]))
    assert ids(found) == ["GGUF-LIMIT-EXCEEDED"]
    assert "nested" in found[0].message


def test_unknown_value_type(tmp_path: Path) -> None:
    data = build([string("x.weird") + struct.pack("<I", 99) + b"\0" * 16])
    assert ids(scan_bytes(tmp_path, data)) == ["GGUF-HEADER-INVALID"]


def test_metadata_over_policy_header_limit(tmp_path: Path) -> None:
    data = build([kv_str("general.blob", "x" * 5000)])
    policy = Policy(limits=Limits(max_header_size=1000))
    assert ids(scan_bytes(tmp_path, data, policy)) == ["GGUF-LIMIT-EXCEEDED"]


@pytest.mark.parametrize("alignment", [0, 48])
def test_bad_alignment(tmp_path: Path, alignment: int) -> None:
    data = build([kv_u32("general.alignment", alignment)], [tensor("a", (8,), 0, 0)], b"\0" * 32)
    assert ids(scan_bytes(tmp_path, data)) == ["GGUF-HEADER-INVALID"]


def test_too_many_dimensions(tmp_path: Path) -> None:
    """Technique: n_dims over GGML_MAX_DIMS, the heap overflow of CVE-2024-21802."""
    data = build([], [tensor("a", (1, 1, 1, 1, 1, 1, 1), 0, 0)], b"\0" * 32)
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-TENSOR-INVALID"]
    assert "7 dimensions" in found[0].message


def test_dimension_overflow(tmp_path: Path) -> None:
    """Technique: dimensions whose product overflows int64 so a size check wraps around."""
    data = build([], [tensor("a", (2**40, 2**40), 0, 0)], b"\0" * 32)
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-TENSOR-INVALID"]
    assert found[0].severity is Severity.HIGH


def test_offset_breaking_layout(tmp_path: Path) -> None:
    """Technique: two tensors sharing bytes (overlapping offsets)."""
    data = build([], [tensor("a", (8,), 0, 0), tensor("b", (8,), 0, 0)], b"\0" * 64)
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-TENSOR-INVALID"]
    assert "expected 32" in found[0].message


def test_tensor_past_end_of_file(tmp_path: Path) -> None:
    """Technique: tensor data declared beyond the file, for an out-of-bounds read."""
    data = build([], [tensor("a", (1024, 1024), 0, 0)], b"\0" * 64)
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-TENSOR-OUT-OF-BOUNDS"]
    assert found[0].severity is Severity.HIGH


def test_row_not_whole_blocks(tmp_path: Path) -> None:
    data = build([], [tensor("q", (33,), 2, 0)], b"\0" * 64)
    assert ids(scan_bytes(tmp_path, data)) == ["GGUF-TENSOR-INVALID"]


def test_unknown_tensor_type_is_low(tmp_path: Path) -> None:
    found = scan_bytes(tmp_path, build([], [tensor("a", (8,), 200, 0)], b"\0" * 32))
    assert ids(found) == ["GGUF-TENSOR-INVALID"]
    assert found[0].severity is Severity.LOW


def test_duplicate_and_overlong_tensor_names(tmp_path: Path) -> None:
    data = build([], [tensor("a", (8,), 0, 0), tensor("a", (8,), 0, 32),
                      tensor("n" * 80, (8,), 0, 64)], b"\0" * 96)
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-TENSOR-INVALID", "GGUF-TENSOR-INVALID"]


def test_appended_zip_polyglot(tmp_path: Path) -> None:
    """Technique: a zip appended after the tensors: also a torch.load-able checkpoint."""
    extra = io.BytesIO()
    with zipfile.ZipFile(extra, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\n.")
    data = build([], [tensor("a", (8,), 0, 0)], b"\0" * 32 + extra.getvalue())
    found = scan_bytes(tmp_path, data)
    assert ids(found) == ["GGUF-UNCOVERED-DATA"]
    assert found[0].properties["trailing_bytes"] == len(extra.getvalue())


def test_large_vocabulary_is_fast_and_reads_no_tensor_data() -> None:
    """200k-token vocabulary walked in place; the 8 MiB of tensor data is never read."""
    tokens = b"".join(string(f"tok{i}") for i in range(200_000))
    vocab = string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 200_000) + tokens
    head = build([vocab, kv_str("tokenizer.chat_template", CHATML)],
                 [tensor("w", (2 * 2**20,), 0, 0)])
    data = head + b"\0" * (8 * 2**20)
    reads: list[int] = []

    class Counting(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            chunk = super().read(n)
            reads.append(len(chunk))
            return chunk

    target = Target(Location(path="big.gguf"), len(data), data[:4096], lambda: Counting(data))
    assert list(ANALYZER.analyze(target, Context(registry=Registry([ANALYZER])))) == []
    assert sum(reads) < len(head) + 2**17


def test_oversized_template_is_reported_and_still_scanned_as_text() -> None:
    """Technique: pad the template past the tokenizer bound, payload at the end."""
    source = "x" * (chat_template.MAX_TEMPLATE_CHARS + 10) + "{{ ().__class__ }}"
    details = [h.detail for h in analyze_template(source)]
    assert any("only the first" in d for d in details)
    assert any("__class__" in d for d in details)


@pytest.mark.parametrize(
    "source",
    ["{{ '_' * 1e400 ~ 'class' }}", '{{ "\\" ' * 1000, "{{ " + "x|attr(" * 500,
     "{{ {'a': {'b': 1}} }}", "{% if %}", "{{", "{#", "{% raw %}"],
)
def test_odd_templates_never_crash(source: str) -> None:
    hits = analyze_template(source)
    assert all(h.kind != INTERNALS for h in hits)


def test_mutated_files_never_raise(tmp_path: Path) -> None:
    """Fail closed: damaged headers become findings, never exceptions."""
    from tests.scan.test_safetensors import mutations

    data = build([kv_str("tokenizer.chat_template", CHATML), kv_u32("general.alignment", 32),
                  string("x.nested") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 8, 1)
                  + string("tok")], [tensor("a", (8,), 0, 0), tensor("b", (32, 2), 8, 32)],
                 b"\0" * 128)
    assert scan_bytes(tmp_path, data) == []
    ctx = Context(registry=Registry([ANALYZER]))
    claimed = 0
    for sample in mutations(data, 400, seed=11):
        target = Target.from_bytes(sample, Location(path="fuzz"))
        if ANALYZER.claims(target):
            claimed += 1
            list(ANALYZER.analyze(target, ctx))
    assert claimed > 100
