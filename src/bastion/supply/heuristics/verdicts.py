"""From one file's signals to findings: co-occurrence decides the severity.

A credential read is not malicious, and neither is an HTTP request: ``requests`` reads
``.netrc`` and sends requests, a configuration library reads the environment. What marks the
`ctx` takeover is both *in one function*. So each verdict looks at where the signals sit:

* the same function (or module-level code): the strongest grade;
* functions that call one another within the module (``__init__`` calling ``send``): one
  grade lower;
* merely the same module: low (pip's vendored distlib reads ``.pypirc`` in one function
  and opens sockets in another), or nothing.

Every finding quotes its evidence as ``file:line: code`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bastion.findings import Finding, Location, Severity
from bastion.rules import Rule
from bastion.supply.heuristics import rules
from bastion.supply.heuristics.interface import MAIN, MODULE, ModuleFacts, Sig, Signal

STRONG_READS = frozenset({Sig.ENV_BULK, Sig.CRED_FILE, Sig.CRED_STORE})
SENDS = frozenset({Sig.NETWORK, Sig.DNS, Sig.WEBHOOK})
RUNS = frozenset({Sig.EXEC, Sig.EXEC_DECODED})
#: Signals that make install-time or start-up code more than bookkeeping.
STRONG = frozenset({Sig.NETWORK, Sig.DNS, Sig.WEBHOOK, Sig.SHELL, Sig.EXEC, Sig.EXEC_DECODED,
                    Sig.EXEC_DOWNLOADED, Sig.ENV_BULK, Sig.CRED_FILE, Sig.CRED_STORE,
                    Sig.METADATA, Sig.DYN_IMPORT, Sig.BUILTINS_TRICK, Sig.BLOB, Sig.HIDDEN})
#: Most evidence lines quoted in one finding.
MAX_EVIDENCE = 8
#: Most findings of one rule about one file's separate lines.
MAX_PER_RULE = 5
_GRAPH_LIMIT = 500
_BLANKS = re.compile(r"[ \t]{20,}")
_LONG_STRING = re.compile(r"""(['"])([^'"\\]{64,})\1""")


@dataclass(frozen=True)
class Source:
    """Where a file's findings point: its location (member chain) and its shown name."""

    location: Location
    shown: str
    facts: ModuleFacts

    def at(self, line: int) -> Location:
        return self.location.at(line=line) if line > 0 else self.location

    def evidence(self, signals: Iterable[Signal], anchor: int = 0) -> str:
        """The finding's own line, then each signal's line: ``file:line: code``.

        Runs of blanks are shown as a count (code hidden past the screen's edge becomes
        visible), long string literals are shortened, and what a decoded payload does is
        noted after its line.
        """
        chosen = sorted(signals, key=lambda s: s.line)
        numbers = list(dict.fromkeys(([anchor] if anchor > 0 else []) +
                                     [s.line for s in chosen if s.line > 0]))[:MAX_EVIDENCE]
        shown = []
        for number in numbers:
            code = _BLANKS.sub(lambda m: f" ⟨{len(m.group())} blanks⟩ ", self.facts.line(number))
            code = _LONG_STRING.sub(lambda m: f"{m.group(1)}{m.group(2)[:24]}…⟨{len(m.group(2))} "
                                    f"characters⟩{m.group(1)}", code)
            notes = list(dict.fromkeys(s.detail[10:] for s in chosen if s.line == number
                                       and s.detail.startswith("[payload] ")))[:3]
            note = f"  # payload: {'; '.join(notes)}" if notes else ""
            shown.append(f"{self.shown}:{number}: {code[:240]}{note}")
        return "\n".join(shown)

    def finding(self, rule: Rule, line: int, message: str, signals: Iterable[Signal],
                severity: Severity, **properties: object) -> Finding:
        chosen = list(signals)
        return rule.finding(self.at(line), message, evidence=self.evidence(chosen, line),
                            severity=severity, properties={
                                "signals": sorted({s.kind.value for s in chosen}),
                                "details": [s.detail for s in chosen[:MAX_EVIDENCE]],
                                **properties})


def reach(facts: ModuleFacts, start: str) -> set[str]:
    """The scopes ``start`` runs: itself and the module's functions it calls, transitively."""
    seen, todo = {start}, [start]
    while todo and len(seen) < _GRAPH_LIMIT:
        for callee in facts.calls.get(todo.pop(), ()):
            if callee in facts.scopes and callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return seen


def connected(facts: ModuleFacts, scope: str) -> set[str]:
    """Scopes that call ``scope`` or that it calls (directly or not), itself excluded."""
    backward: dict[str, set[str]] = {}
    for caller, callees in facts.calls.items():
        for callee in callees:
            backward.setdefault(callee, set()).add(caller)
    seen, todo = {scope}, [scope]
    while todo and len(seen) < _GRAPH_LIMIT:
        for caller in backward.get(todo.pop(), ()):
            if caller not in seen:
                seen.add(caller)
                todo.append(caller)
    return (reach(facts, scope) | seen) - {scope}


def _of(signals: Iterable[Signal], kinds: Iterable[Sig]) -> list[Signal]:
    wanted = set(kinds)
    return [s for s in signals if s.kind in wanted]


def _reads(signals: list[Signal]) -> tuple[int, list[Signal]]:
    """How strong the credential reads are (3 strong, 2 metadata, 1 one secret), and which."""
    strong = _of(signals, STRONG_READS)
    secrets = _of(signals, (Sig.ENV_SECRET,))
    names = {s.detail for s in secrets} | {s.detail for s in _of(signals, (Sig.SECRET_NAME,))
                                           if _of(signals, (Sig.ENV_DYNAMIC,))}
    if strong or len(names) >= 3:
        return 3, strong + secrets + _of(signals, (Sig.ENV_DYNAMIC,))
    metadata = _of(signals, (Sig.METADATA,))
    if metadata:
        return 2, metadata
    return (1, secrets) if secrets else (0, [])


_GRADE = {  # (read strength, closeness: 0 same scope, 1 connected, 2 module) → severity
    (3, 0): Severity.CRITICAL, (3, 1): Severity.HIGH, (3, 2): Severity.LOW,
    (2, 0): Severity.HIGH, (2, 1): Severity.MEDIUM, (2, 2): Severity.LOW,
    (1, 0): Severity.MEDIUM, (1, 1): Severity.LOW,
}


def exfiltration(src: Source) -> Iterator[Finding]:
    """Credentials read and data sent: the worst co-occurrence in the file."""
    facts = src.facts
    best: tuple[Severity, list[Signal], list[Signal], str] | None = None
    for scope in sorted({s.scope for s in _of(facts.signals, SENDS)}):
        sends = _of(facts.in_scopes({scope}), SENDS)
        for closeness, scopes in ((0, {scope}), (1, connected(facts, scope)),
                                  (2, facts.scopes)):
            strength, reads = _reads(facts.in_scopes(scopes))
            severity = _GRADE.get((strength, closeness))
            if severity is not None:
                if best is None or severity > best[0]:
                    best = (severity, reads, sends, ("in one function", "in functions that "
                            "call each other", "in one module")[closeness])
                break
    if best is None:
        return
    severity, reads, sends, where = best
    what = ", ".join(dict.fromkeys(s.kind.value for s in reads))
    yield src.finding(rules.EXFILTRATION, sends[0].line,
                      f"reads credentials ({what}) and sends data over the network {where}",
                      [*reads, *sends], severity)


def download_execute(src: Source, role: str) -> Iterator[Finding]:
    """Fetch then run. Executing fetched *code* is critical wherever it is; fetching a file
    and running it is critical where it runs unasked (on import, in setup.py, in a .pth
    line) and low in a function that only runs when called with a fixed https address
    (torch's profiler tools fetch their helpers that way); medium with any other address.
    """
    facts = src.facts
    direct = _of(facts.signals, (Sig.EXEC_DOWNLOADED,))
    if direct:
        yield src.finding(rules.DOWNLOAD_EXECUTE, direct[0].line,
                          "executes what it downloads", direct, Severity.CRITICAL)
        return
    unasked = facts.scopes if role in ("setup", "pth") else reach(facts, MODULE)
    best: tuple[Severity, list[Signal], str] | None = None
    for scope in sorted({s.scope for s in _of(facts.signals, (Sig.NETWORK,))}):
        here = facts.in_scopes({scope})
        fetches = _of(here, (Sig.NETWORK,))
        fetched_lines = {s.line for s in fetches}
        # A payload's own network use is not a download of that payload.
        payload_lines = {s.line for s in fetches if s.detail.startswith("[payload]")}
        runs = [s for s in _of(here, RUNS) if s.line not in payload_lines]
        shells = [s for s in _of(here, (Sig.SHELL, Sig.SHELL_DYNAMIC))
                  if s.line not in fetched_lines]
        drops = _of(here, (Sig.FILE_WRITE,)) + _of(here, (Sig.CHMOD,))
        near = facts.in_scopes(connected(facts, scope))
        fixed = all("'https://" in s.detail for s in fetches)
        tame = Severity.LOW if fixed else Severity.MEDIUM
        if runs:
            found = (Severity.CRITICAL, fetches + runs, "executes fetched code")
        elif shells and drops:
            severity = Severity.CRITICAL if scope in unasked else tame
            found = (severity, fetches + shells + drops, "writes what it fetches and runs it")
        elif shells or _of(near, RUNS) or _of(near, (Sig.SHELL,)):
            severity = Severity.HIGH if scope in unasked else Severity.LOW
            found = (severity, fetches + shells + _of(near, (*RUNS, Sig.SHELL)),
                     "fetches data and runs programs close by")
        else:
            continue
        if best is None or found[0] > best[0]:
            best = found
    if best is not None:
        severity, signals, what = best
        when = " when it is imported or installed" if severity >= Severity.HIGH else (
            " in a function that runs only when called")
        yield src.finding(rules.DOWNLOAD_EXECUTE, signals[0].line, what + when, signals,
                          severity)


def obfuscation(src: Source) -> Iterator[Finding]:
    signals = src.facts.signals
    decoded = _of(signals, (Sig.EXEC_DECODED,))
    for signal in _first(decoded):
        payload = [s for s in signals if s.line == signal.line and s.detail.startswith(
            "[payload]")]
        yield src.finding(rules.OBFUSCATED_EXEC, signal.line, signal.detail, [signal, *payload],
                          Severity.CRITICAL)
    decoded_lines = {s.line for s in decoded}
    for signal in _first(_of(signals, (Sig.BUILTINS_TRICK,))):
        if signal.line not in decoded_lines:
            yield src.finding(rules.OBFUSCATED_EXEC, signal.line, f"builtin {signal.detail}",
                              [signal], Severity.MEDIUM)
    for signal in _first(_of(signals, (Sig.DYN_IMPORT,))):
        yield src.finding(rules.OBFUSCATED_EXEC, signal.line, signal.detail, [signal],
                          Severity.LOW)


def blobs_and_hiding(src: Source) -> Iterator[Finding]:
    facts = src.facts
    executing = (*RUNS, Sig.EXEC_DOWNLOADED, Sig.BUILTINS_TRICK)
    for signal in _first(_of(facts.signals, (Sig.BLOB,))):
        # A module-level blob serves every function; a function's blob, its own scope.
        scopes = facts.scopes if signal.scope == MODULE else {signal.scope}
        runs = _of(facts.in_scopes(scopes), executing)
        severity = Severity.HIGH if runs else Severity.LOW
        message = signal.detail + (" where code executes dynamic data" if runs else "")
        yield src.finding(rules.ENCODED_PAYLOAD, signal.line, message, [signal, *runs], severity)
    for signal in _first(_of(facts.signals, (Sig.HIDDEN,))):
        yield src.finding(rules.HIDDEN_CODE, signal.line, signal.detail, [signal],
                          Severity.MEDIUM)


def import_time(src: Source) -> Iterator[Finding]:
    """Network use by code that runs on ``import`` (module level and what it calls)."""
    facts = src.facts
    network = _of(facts.in_scopes(reach(facts, MODULE)), (Sig.NETWORK, Sig.DNS))
    if network:
        yield src.finding(rules.IMPORT_TIME_NETWORK, network[0].line,
                          "contacts the network when the module is imported", network,
                          Severity.MEDIUM)


def setup_side_effects(src: Source) -> Iterator[Finding]:
    """What executing setup.py does besides calling ``setup()``."""
    facts = src.facts
    ran = facts.in_scopes(reach(facts, MODULE) | reach(facts, MAIN))
    for kinds, severity, what in (
            ((Sig.NETWORK, Sig.DNS), Severity.HIGH, "contacts the network"),
            ((Sig.SHELL,), Severity.MEDIUM, "runs programs that are not build tools"),
            ((Sig.SHELL_DYNAMIC,), Severity.LOW, "runs programs named at run time"),
            ((Sig.FILE_WRITE,), Severity.LOW, "writes files")):
        found = _of(ran, kinds)
        if found:
            yield src.finding(rules.SETUP_SIDE_EFFECT, found[0].line,
                              f"setup.py {what} when it is executed", found, severity)


def _first(signals: list[Signal]) -> list[Signal]:
    """One signal per line, at most :data:`MAX_PER_RULE`."""
    by_line: dict[int, Signal] = {}
    for signal in signals:
        by_line.setdefault(signal.line, signal)
    return list(by_line.values())[:MAX_PER_RULE]


def module_findings(src: Source, *, role: str = "module") -> list[Finding]:
    """Every verdict on one file. ``role``: ``"module"``, ``"setup"`` or ``"pth"``."""
    found = [*exfiltration(src), *download_execute(src, role), *obfuscation(src),
             *blobs_and_hiding(src)]
    if role == "setup":
        found.extend(setup_side_effects(src))
    elif role == "module":
        found.extend(import_time(src))
    return found
