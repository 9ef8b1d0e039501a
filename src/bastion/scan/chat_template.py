"""Static analysis of Jinja chat templates for server-side template injection (SSTI).

Model files (GGUF ``tokenizer.chat_template``, Hugging Face ``tokenizer_config.json``) ship a
Jinja template that inference servers *render* for every request. Rendered in a non-sandboxed
environment, a template can climb from any object to Python internals and run commands:
``().__class__.__base__.__subclasses__()`` or ``lipsum.__globals__['os'].popen(...)``. That is
CVE-2024-34359 (llama-cpp-python). This module never renders or compiles a template: it splits
it into Jinja code regions itself, tokenizes them, decodes string escapes the way Jinja does,
folds simple string arithmetic (``'_'*2 ~ 'class' ~ '_'*2``, adjacent literals, ``|join``,
``"%c"|format(95)``) and looks for what no real chat template needs: dunder attributes,
name-mangled privates, obfuscated ``attr`` lookups, and command-running callables.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

#: Templates longer than this are tokenized only up to here (the raw text scan sees all).
MAX_TEMPLATE_CHARS = 1 << 18  # real ones are under 64 KiB
#: ``{% set %}`` string variables remembered for folding, and their length bound.
MAX_VARIABLES = 1_000
MAX_VARIABLE_CHARS = 4_096
#: Folded strings are checked and cut back to a tail when they grow past this.
MAX_RUN_CHARS = 16_384
#: Tokens searched for the closing parenthesis of a call's arguments.
MAX_CALL_TOKENS = 64
#: A string repeated more than this (``'_' * 1000000``) is capped while folding.
MAX_REPEAT = 64

INTERNALS = "internals"  # reaches Python object internals: critical
SUSPICIOUS = "suspicious"  # obfuscation or command execution without visible internals


@dataclass(frozen=True)
class TemplateHit:
    """One suspicious construct: what kind, the matched text and its 1-based line."""

    kind: str
    detail: str
    line: int


_DUNDER = re.compile(r"__[A-Za-z]\w*__")
_MANGLED = re.compile(r"_[A-Za-z]\w*__[A-Za-z]\w*")  # self._TemplateReference__context
#: Dunder names that lead from any object to classes, modules and builtins. Inside a string
#: literal only these count, so a system prompt quoting ``__name__`` stays clean.
_INTERNAL_NAMES = (
    r"__(?:class|mro|base|bases|subclasses|globals|builtins|import|init|dict|code|func|self|"
    r"getattribute|reduce|reduce_ex|loader|spec|closure|wrapped)__|_TemplateReference__context"
)
_STRING_INTERNALS = re.compile(_INTERNAL_NAMES, re.IGNORECASE)  # '__CLASS__'|lower
#: Attribute or key names that run commands or import modules; a chat template has no use.
DANGEROUS_ATTRS = frozenset({
    "popen", "subprocess", "os", "sys", "builtins", "import_module", "check_output",
    "getoutput", "getstatusoutput", "spawnl", "spawnv", "execl", "execv", "execve",
    "execvp", "modules", "load_module", "mro",
})
#: Names that are dangerous only when called: ``.system(``, ``eval(``.
DANGEROUS_CALLS = frozenset({"system", "eval", "exec", "compile", "getattr", "setattr",
                             "open", "Popen", "run_path", "load"})
#: Jinja globals that are the usual first step of an escape (reported as context).
GADGETS = frozenset({"lipsum", "cycler", "joiner", "namespace", "self", "range", "dict",
                     "request", "config", "url_for", "get_flashed_messages", "g"})

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<name>[^\W\d]\w*)
      | (?P<op>//|\*\*|==|!=|>=|<=|[-+*/%~()\[\]{}.,:|=<>;!])
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_OPEN = re.compile(r"\{\{|\{%|\{#")
_RAW = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_ENDRAW = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_RUN = frozenset({"~", "+", "*", "(", ")", "[", "]", ","})


class _Tok(NamedTuple):
    kind: str  # "string" | "number" | "name" | "op" | "other"
    text: str  # raw source text
    value: str  # decoded value for strings, else the text
    pos: int


def _decode(body: str) -> str:
    """Unescape a string literal body the way Jinja's lexer does (unicode-escape)."""
    try:
        return body.encode("ascii", "backslashreplace").decode("unicode-escape")
    except (UnicodeDecodeError, ValueError):
        return body


def _lex_code(source: str, start: int, closer: str) -> tuple[list[_Tok], int]:
    """Tokens of one ``{{ }}`` / ``{% %}`` region; ends at the closer outside brackets."""
    tokens: list[_Tok] = []
    depth = 0
    pos = start + 1 if source[start:start + 1] in ("-", "+") else start  # whitespace control
    while pos < len(source):
        if depth == 0 and source.startswith(closer, pos):
            return tokens, pos + 2
        if depth == 0 and source[pos] in "-+" and source.startswith(closer, pos + 1):
            return tokens, pos + 3
        match = _TOKEN.match(source, pos)
        if match is None:  # pragma: no cover - the "other" branch matches any character
            break
        kind = match.lastgroup or "other"
        text = match.group()
        pos = match.end()
        if kind == "ws":
            continue
        if kind == "other" and text in "'\"":
            # An unterminated string: Jinja's lexer fails here too, so the template never
            # compiles. Stop, rather than rescan the rest once per stray quote (quadratic).
            return tokens, len(source)
        if kind == "op" and text in "([{":
            depth += 1
        elif kind == "op" and text in ")]}" and depth:
            depth -= 1
        value = _decode(text[1:-1]) if kind == "string" else text
        tokens.append(_Tok(kind, text, value, match.start()))
    return tokens, pos


def _regions(source: str) -> Iterator[list[_Tok]]:
    """Token lists of every code region, skipping comments, raw blocks and literal text."""
    pos = 0
    while True:
        opener = _OPEN.search(source, pos)
        if opener is None:
            return
        kind = opener.group()
        if kind == "{#":
            end = source.find("#}", opener.end())
            pos = len(source) if end < 0 else end + 2
            continue
        raw = _RAW.match(source, opener.start())
        if raw is not None:
            endraw = _ENDRAW.search(source, raw.end())
            pos = len(source) if endraw is None else endraw.end()
            continue
        tokens, pos = _lex_code(source, opener.end(), "}}" if kind == "{{" else "%}")
        yield tokens


def _match_parens(tokens: list[_Tok]) -> dict[int, int]:
    """Index of the matching ``)`` for every ``(`` that is closed, in one pass."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for j, tok in enumerate(tokens):
        if tok.kind == "op" and tok.text == "(":
            stack.append(j)
        elif tok.kind == "op" and tok.text == ")" and stack:
            closing[stack.pop()] = j
    return closing


def _call_args(tokens: list[_Tok], index: int, closing: dict[int, int]) -> list[_Tok]:
    """The tokens between ``(`` at ``index`` and its ``)``; a bounded tail when unclosed."""
    end = closing.get(index, min(len(tokens), index + 1 + MAX_CALL_TOKENS))
    return tokens[index + 1:end]


def _folded_strings(tokens: list[_Tok], env: dict[str, str],
                    closing: dict[int, int]) -> Iterator[tuple[str, int]]:
    """Strings a region builds from literals: runs joined by ``~ + ,`` or adjacency, with
    ``* N`` repetition, ``%c`` formatting, reversal and variables ``{% set %}`` to literal
    strings earlier (``env``). Over-approximates on purpose: a chat template builds none."""
    run = ""
    run_pos = 0
    multiplier = 1
    for i, tok in enumerate(tokens):
        is_var = tok.kind == "name" and tok.text in env and (i == 0 or tokens[i - 1].text != ".")
        if tok.kind == "string" or is_var:
            value = env[tok.text] if is_var else tok.value
            piece = value * multiplier
            multiplier = 1
            if i + 2 < len(tokens) and tokens[i + 1].text == "*" \
                    and tokens[i + 2].kind == "number":
                piece = value * min(_int(tokens[i + 2].text), MAX_REPEAT)
            if not run:
                run_pos = tok.pos
            run += piece
            if len(run) > MAX_RUN_CHARS:  # check, then keep only a tail that may continue
                yield run, run_pos
                run = run[-MAX_VARIABLE_CHARS:]
            yield value[::-1], tok.pos
            formatted = _transformed(tokens, i, closing)
            if formatted is not None:
                yield formatted, tok.pos
        elif tok.kind == "number" and i + 1 < len(tokens) and tokens[i + 1].text == "*":
            multiplier = min(_int(tok.text), MAX_REPEAT)
        elif tok.kind == "number" or (tok.kind == "op" and tok.text in _RUN):
            continue
        elif run:
            yield run, run_pos
            run = ""
    if run:
        yield run, run_pos


def _record_set(tokens: list[_Tok], env: dict[str, str]) -> None:
    """Remember ``{% set name = <literal string expression> %}`` for later folding."""
    if len(tokens) < 4 or tokens[0].text != "set" or tokens[1].kind != "name" \
            or tokens[2].text != "=" or len(env) >= MAX_VARIABLES:
        return
    rhs = tokens[3:]
    if all(t.kind in ("string", "number") or (t.kind == "op" and t.text in _RUN)
           or (t.kind == "name" and t.text in env) for t in rhs):
        runs = [text for text, pos in _folded_strings(rhs, env, {}) if pos == rhs[0].pos]
        if runs:
            env[tokens[1].text] = runs[-1][:MAX_VARIABLE_CHARS]


def _int(text: str) -> int:
    try:
        return max(0, int(float(text.replace("_", ""))))
    except (ValueError, OverflowError):  # "1e400" is infinite
        return 1


_PERCENT = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?([csdrai])")
_BRACES = re.compile(r"\{(\d*)\}")


def _transformed(tokens: list[_Tok], i: int, closing: dict[int, int]) -> str | None:
    """The literal at ``i`` after one string-building call on it, evaluated statically:
    ``"%c%c"|format(95, 95)``, ``'{0}{0}'.format('_')``, ``'__clXass__'|replace('X', '')``."""
    if i + 3 >= len(tokens) or tokens[i + 3].text != "(" \
            or tokens[i + 1].text not in ("|", "."):
        return None
    method = tokens[i + 2].text
    if method not in ("format", "replace"):
        return None
    args = [t for t in _call_args(tokens, i + 3, closing) if t.kind in ("string", "number")]
    text = tokens[i].value
    if method == "replace":
        return text.replace(args[0].value, args[1].value) if len(args) >= 2 else None
    values = iter(args)

    def percent(match: re.Match[str]) -> str:
        arg = next(values, None)
        if arg is None:
            return match.group()
        if match.group(1) == "c" and arg.kind == "number":
            return chr(min(_int(arg.text), 0x10FFFF))
        return arg.value

    if tokens[i + 1].text == "|":
        return _PERCENT.sub(percent, text)
    positional = [a.value for a in args]
    counter = iter(range(len(positional)))

    def brace(match: re.Match[str]) -> str:
        index = int(match.group(1)) if match.group(1) else next(counter, len(positional))
        return positional[index] if index < len(positional) else match.group()

    return _BRACES.sub(brace, text)


def _internal_name(text: str) -> str | None:
    """The internals name a string literal (or a string built from literals) spells."""
    match = _STRING_INTERNALS.search(text)
    return match.group() if match else None


def _internal_identifier(name: str) -> bool:
    """A dunder (``__class__``) or name-mangled private (``_TemplateReference__context``)."""
    if _DUNDER.fullmatch(name):
        return True
    return name.startswith("_") and bool(_MANGLED.fullmatch(name))


def _scan_region(tokens: list[_Tok], env: dict[str, str]) -> Iterator[tuple[str, str, int]]:
    """(kind, detail, source position) for each suspicious construct in one region."""
    closing = _match_parens(tokens)
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        prev = tokens[i - 1] if i else None
        if tok.kind == "name":
            if _internal_identifier(tok.text):
                yield INTERNALS, f"attribute or name {tok.text}", tok.pos
            called = nxt is not None and nxt.text == "("
            after_dot = prev is not None and prev.text == "."
            if after_dot and tok.text in DANGEROUS_ATTRS:
                yield SUSPICIOUS, f"attribute .{tok.text}", tok.pos
            elif called and tok.text in DANGEROUS_CALLS and (after_dot or tok.text != "load"):
                yield SUSPICIOUS, f"call {tok.text}(...)", tok.pos
            if tok.text == "attr" and prev is not None and prev.text == "|":
                yield from _attr_filter(tokens, i, closing)
            if tok.text == "format" and prev is not None and prev.text == "|" \
                    and i >= 2 and "%c" in tokens[i - 2].value:
                yield SUSPICIOUS, "character-code formatting |format with %c", tok.pos
        elif tok.kind == "string":
            name = _internal_name(tok.value)
            if name is not None:
                yield INTERNALS, f"string {name!r}", tok.pos
            if prev is not None and prev.text == "[" and nxt is not None and nxt.text == "]" \
                    and tok.value in DANGEROUS_ATTRS:
                yield SUSPICIOUS, f"subscript [{tok.value!r}]", tok.pos
    literal = {_internal_name(t.value) for t in tokens if t.kind == "string"}
    for text, pos in _folded_strings(tokens, env, closing):
        name = _internal_name(text)
        if name is not None and name not in literal:
            yield INTERNALS, f"string assembled to {name!r}", pos


def _attr_filter(tokens: list[_Tok], i: int,
                 closing: dict[int, int]) -> Iterator[tuple[str, str, int]]:
    """``|attr(x)``: a literal dangerous name, an escaped literal, or a computed name."""
    if i + 1 >= len(tokens) or tokens[i + 1].text != "(":
        return
    args = _call_args(tokens, i + 1, closing)
    pos = tokens[i].pos
    if len(args) == 1 and args[0].kind == "string":
        value = args[0].value
        if value in DANGEROUS_ATTRS or value in DANGEROUS_CALLS:
            yield SUSPICIOUS, f"|attr({value!r})", pos
        elif "\\" in args[0].text and _internal_name(value) is None:
            yield SUSPICIOUS, f"|attr with an escaped name {args[0].text}", pos
    else:
        yield SUSPICIOUS, "|attr with a computed attribute name", pos


_RAW_INTERNALS = re.compile(
    _INTERNAL_NAMES + r"|\\x5f\\x5f|\\u005f\\u005f|\\137\\137", re.IGNORECASE
)


def analyze_template(source: str) -> list[TemplateHit]:
    """Every suspicious construct in a Jinja template, without rendering it. Empty = clean."""
    newlines = [m.start() for m in re.finditer("\n", source)]

    def line(pos: int) -> int:
        return bisect.bisect_right(newlines, pos) + 1

    hits: dict[tuple[str, str], TemplateHit] = {}
    code = source[:MAX_TEMPLATE_CHARS]
    env: dict[str, str] = {}
    for tokens in _regions(code):
        for kind, detail, pos in _scan_region(tokens, env):
            hits.setdefault((kind, detail), TemplateHit(kind, detail, line(pos)))
        _record_set(tokens, env)
    if len(source) > MAX_TEMPLATE_CHARS:
        hits.setdefault((SUSPICIOUS, "size"), TemplateHit(
            SUSPICIOUS, f"template of {len(source)} characters; only the first "
            f"{MAX_TEMPLATE_CHARS} were tokenized", 1))
    if not any(h.kind == INTERNALS for h in hits.values()):
        # A backstop in case the region split differs from Jinja's: comments never render.
        text = _COMMENT.sub(lambda m: "\n" * m.group().count("\n"), source)
        match = _RAW_INTERNALS.search(text)
        if match is not None:
            hits.setdefault((SUSPICIOUS, "raw"), TemplateHit(
                SUSPICIOUS, f"internals name {match.group()!r} in template text",
                text.count("\n", 0, match.start()) + 1))
    return sorted(hits.values(), key=lambda h: (h.kind != INTERNALS, h.line, h.detail))


def gadgets(source: str) -> list[str]:
    """The Jinja globals a template names that escapes commonly start from (context only)."""
    found = {m.group() for m in re.finditer(r"[^\W\d]\w*", source[:MAX_TEMPLATE_CHARS])}
    return sorted(found & GADGETS)
