"""Pickle streams: the format behind PyTorch, joblib, NumPy object arrays and plain pickles.

:func:`scan_pickles` walks one or more pickles in a stream with the symbolic
:class:`~bastion.scan.pickle.machine.Machine` and turns what it saw into findings; the
format analyzers (PyTorch, joblib, NumPy) call it on the pickles they find, and
:class:`PickleAnalyzer` claims raw pickle files by their first opcodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from bastion.analyzer import Context, Target
from bastion.findings import Category, Finding, Location, Severity
from bastion.rules import Rule
from bastion.scan.pickle.globals import Verdict
from bastion.scan.pickle.machine import GlobalUse, Machine, PickleResult
from bastion.scan.pickle.reader import Reader, Truncated
from bastion.scan.pickle.values import Issue, Malformed

_REFS = ("ML06", "AML.T0010", "AML.T0011", "CWE-502")
_FIX = ("Do not load this file. Re-export the model in a format that holds no code "
        "(safetensors, ONNX), or load it with torch.load(weights_only=True) / skops after review.")

DANGEROUS_GLOBAL = Rule(
    id="PICKLE-DANGEROUS-GLOBAL", title="Pickle imports a code-execution primitive",
    severity=Severity.CRITICAL, category=Category.CODE_EXECUTION,
    description="The pickle imports a callable that runs commands, evaluates code, opens files "
                "or sockets, or loads further code (os.system, builtins.eval, subprocess, "
                "torch.hub.load, ...). Loading the file runs it.",
    remediation=_FIX, references=_REFS)
SUSPICIOUS_GLOBAL = Rule(
    id="PICKLE-SUSPICIOUS-GLOBAL", title="Pickle imports a call-chaining gadget",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="The pickle imports a callable that is harmless alone but chains or redirects "
                "calls (functools.partial, map, builtins other than data types); evasive "
                "payloads use such gadgets.",
    remediation=_FIX, references=_REFS)
UNKNOWN_GLOBAL = Rule(
    id="PICKLE-UNKNOWN-GLOBAL", title="Pickle imports a name outside the allowlist",
    severity=Severity.MEDIUM, category=Category.CODE_EXECUTION,
    description="The pickle imports a name that is not a known-safe constructor of the common ML "
                "libraries. Loading the file imports that module and may call the name. If it "
                "is your own trusted code, add it to `allow.pickle-globals` in the policy.",
    remediation="Review the named code; allow it in the policy if trusted, or re-export the "
                "model as safetensors/ONNX.", references=_REFS)
DYNAMIC_IMPORT = Rule(
    id="PICKLE-DYNAMIC-IMPORT", title="Pickle imports a name computed at load time",
    severity=Severity.CRITICAL, category=Category.CODE_EXECUTION,
    description="STACK_GLOBAL receives a module or name that is not a constant string, so what "
                "is imported is decided while loading. Legitimate serializers never do this; "
                "evasive payloads do.", remediation=_FIX, references=_REFS)
DYNAMIC_CALL = Rule(
    id="PICKLE-DYNAMIC-CALL", title="Pickle calls something that is not an imported name",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="A REDUCE/NEWOBJ calls the result of another call or a non-importable object: "
                "the callable is decided at load time (a getattr-style gadget chain).",
    remediation=_FIX, references=_REFS)
EXTENSION_CODE = Rule(
    id="PICKLE-EXTENSION-CODE", title="Pickle uses extension codes",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="EXT1/EXT2/EXT4 import whatever the loading process registered in copyreg's "
                "extension registry; static analysis cannot tell what that is.",
    remediation=_FIX, references=_REFS)
GLOBAL_MUTATION = Rule(
    id="PICKLE-GLOBAL-MUTATION", title="Pickle changes attributes of an imported object",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="BUILD is applied to an imported class, function or module itself rather than "
                "to a new instance, overwriting process-wide state when the file is loaded.",
    remediation=_FIX, references=_REFS)
MALFORMED = Rule(
    id="PICKLE-MALFORMED", title="Pickle stream is broken or truncated",
    severity=Severity.HIGH, category=Category.MALFORMED,
    description="The pickle cannot be parsed to its end. Python's loader runs every opcode "
                "before the error, so a broken stream (a nullifAI-style evasion) is never "
                "treated as clean; what was seen before the error is reported too.",
    remediation="Do not load the file; obtain an intact copy from a trusted source.",
    references=("ML06", "AML.T0010", "CWE-502"))
TOO_COMPLEX = Rule(
    id="PICKLE-TOO-COMPLEX", title="Pickle exceeds the analysis limits",
    severity=Severity.HIGH, category=Category.RESOURCE,
    description="The pickle has more opcodes (or nested pickles) than `limits.max-pickle-opcodes` "
                "allows; analysis stopped and the rest is unchecked.",
    remediation="Raise the limit in the policy if the file is expected to be this large.")
NESTED_PICKLE = Rule(
    id="PICKLE-NESTED-UNCHECKED", title="Nested pickle could not be analysed",
    severity=Severity.HIGH, category=Category.CODE_EXECUTION,
    description="The pickle loads another pickle from bytes it carries (e.g. "
                "torch.storage._load_from_bytes) that is too large or too deep to analyse.",
    remediation=_FIX, references=_REFS)
TRAILING_DATA = Rule(
    id="PICKLE-TRAILING-DATA", title="Data after the end of the pickle",
    severity=Severity.LOW, category=Category.MALFORMED,
    description="Bytes follow the pickle's STOP opcode that are not another pickle. A plain "
                "pickle.load ignores them, but a loader reading several objects would not.",
    remediation="Check how the file was produced.")

RULES: tuple[Rule, ...] = (
    DANGEROUS_GLOBAL, DYNAMIC_IMPORT, SUSPICIOUS_GLOBAL, DYNAMIC_CALL, EXTENSION_CODE,
    GLOBAL_MUTATION, MALFORMED, TOO_COMPLEX, NESTED_PICKLE, UNKNOWN_GLOBAL, TRAILING_DATA,
)

_VERDICT_RULES = {
    Verdict.DANGEROUS: DANGEROUS_GLOBAL,
    Verdict.SUSPICIOUS: SUSPICIOUS_GLOBAL,
    Verdict.UNKNOWN: UNKNOWN_GLOBAL,
}
_ISSUE_RULES = {
    "malformed": MALFORMED,
    "dynamic-global": DYNAMIC_IMPORT,
    "dynamic-call": DYNAMIC_CALL,
    "extension": EXTENSION_CODE,
    "global-build": GLOBAL_MUTATION,
    "too-complex": TOO_COMPLEX,
    "nested-pickle": NESTED_PICKLE,
}

#: At most this many pickles are walked one after another in one stream.
MAX_PICKLES = 256


def _global_finding(use: GlobalUse, location: Location) -> Finding | None:
    rule = _VERDICT_RULES.get(use.classification.verdict)
    if rule is None:
        return None
    if use.calls:
        call = use.calls[0]
        message = f"calls {use.full}({call.args}) when loaded"
        evidence = f"{use.via} {use.full} at offset {use.offset}; " + "; ".join(
            f"called at offset {c.offset}" + (f" with ({c.args})" if i else "")
            for i, c in enumerate(use.calls))
    else:
        message = f"imports {use.full} when loaded"
        evidence = f"{use.via} {use.module} {use.name} at offset {use.offset}"
    return rule.finding(
        location.at(offset=use.calls[0].offset if use.calls else use.offset),
        f"{message}: {use.classification.reason}",
        evidence=evidence,
        properties={"module": use.module, "name": use.name, "via": use.via, "count": use.count,
                    "called": bool(use.calls)},
    )


def _issue_finding(issue: Issue, location: Location) -> Finding:
    return _ISSUE_RULES[issue.kind].finding(location.at(offset=issue.offset), issue.message,
                                            evidence=issue.evidence)


def result_findings(result: PickleResult, location: Location) -> list[Finding]:
    out = []
    for use in result.globals.values():
        finding = _global_finding(use, location)
        if finding is not None:
            out.append(finding)
    out.extend(_issue_finding(issue, location) for issue in result.issues)
    return out


def walk_pickles(
    stream: IO[bytes], ctx: Context, *, start: int = 0, size: int | None = None,
    multi: bool = True, max_pickles: int = MAX_PICKLES,
) -> list[PickleResult]:
    """Walk the pickle at ``start`` and, with ``multi``, the pickles that follow it.

    ``max_pickles`` stops the walk quietly after that many pickles (formats whose raw data
    follows a known number of pickles); past :data:`MAX_PICKLES` the walk is reported.
    """
    limits = ctx.policy.limits
    reader = Reader(stream, start, size)
    budget = limits.max_pickle_opcodes
    results: list[PickleResult] = []
    while len(results) < min(max_pickles, MAX_PICKLES):
        machine = Machine(reader, max_opcodes=budget, allowed=ctx.policy.allow.pickle_globals)
        result = machine.run()
        budget = machine.opcodes_left
        if results and not result.complete and not result.globals and not any(
                i.kind not in ("malformed",) for i in result.issues):
            # Not another pickle: plain trailing bytes.
            result.issues = [Issue("trailing", result.start, "")]
            results.append(result)
            break
        results.append(result)
        if not multi or not result.complete or reader.at_end or budget <= 0:
            break
    else:
        if max_pickles < MAX_PICKLES:
            return results
        results[-1].issues.append(Issue("too-complex", reader.tell(),
                                        f"more than {MAX_PICKLES} pickles in one stream"))
    return results


def scan_pickles(
    target: Target, ctx: Context, *, start: int = 0, size: int | None = None,
    multi: bool = True, max_pickles: int = MAX_PICKLES, location: Location | None = None,
) -> Iterator[Finding]:
    """Findings for the pickle(s) in a target, including pickles nested as bytes."""
    location = location or target.location
    with target.open() as stream:
        results = walk_pickles(stream, ctx, start=start, size=size, multi=multi,
                               max_pickles=max_pickles)
    for result in results:
        trailing = [i for i in result.issues if i.kind == "trailing"]
        if trailing:
            end = start + size if size is not None else target.size
            yield TRAILING_DATA.finding(
                location.at(offset=result.start),
                f"{end - result.start} bytes follow the pickle and are not a pickle")
            continue
        yield from result_findings(result, location)
        for offset, data in result.nested:
            yield from _nested(data, offset, location, target.depth, ctx)


def _nested(data: bytes, offset: int, location: Location, depth: int,
            ctx: Context) -> Iterator[Finding]:
    if depth + 1 > ctx.policy.limits.max_archive_depth:
        yield NESTED_PICKLE.finding(location.at(offset=offset),
                                    "nested pickle deeper than limits.max-archive-depth")
        return
    nested = Target.from_bytes(data, location.child(f"<bytes loaded at offset {offset}>"),
                               depth + 1)
    found = list(ctx.analyze_nested(nested))
    if not ctx.registry.claimants(nested):
        found = list(scan_pickles(nested, ctx))
    yield from found


# -- claiming raw pickles ------------------------------------------------------------------------


def looks_like_pickle(head: bytes) -> bool:
    """Cheap content sniff: a protocol 2+ header, or opcodes that parse like a real pickle."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if not head or head[0] not in _FIRST_OPCODES:
        return False
    import io

    reader = Reader(io.BytesIO(head), 0, len(head))
    machine = Machine(reader, max_opcodes=len(head))
    result = machine.run()
    if result.complete:
        return result.opcodes >= 2
    malformed = [i for i in result.issues if i.kind == "malformed"]
    named = [u for u in result.globals.values() if "malformed" not in u.classification.reason]
    if not malformed or malformed[0].message.startswith("the pickle is truncated"):
        # Ran off the sniff window without an error: padding cannot hide a payload behind it.
        return result.opcodes >= 16 or bool(named)
    if not named:
        return False
    # A real name was imported before an error: claim it if the walk went on past it.
    first = min(use.offset for use in result.globals.values())
    return malformed[0].offset - first > 8 or result.opcodes >= 4


_FIRST_OPCODES = frozenset(b"(cNI]})SVXKJMGFldUTLPi\x8c\x95")


class PickleAnalyzer:
    """Raw pickle files (``.pkl``, ``.pickle``, ``.bin`` ... whatever their name)."""

    name = "pickle"
    capability = "model"
    rules = RULES

    def claims(self, target: Target) -> bool:
        return looks_like_pickle(target.head)

    def analyze(self, target: Target, ctx: Context) -> Iterator[Finding]:
        yield from scan_pickles(target, ctx)


__all__ = ["RULES", "Malformed", "PickleAnalyzer", "Truncated", "looks_like_pickle",
           "result_findings", "scan_pickles", "walk_pickles"]
