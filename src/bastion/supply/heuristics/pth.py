"""``.pth`` files: lines that site.py executes at every interpreter start.

``site.addpackage`` reads each ``.pth`` file in site-packages at start-up: a line starting
with ``import`` followed by a space or tab is passed to ``exec``; any other line is a path
added to ``sys.path`` (harmless). Executable lines are legitimate for a few tools
(setuptools' ``distutils-precedence.pth``, editable installs, coverage), so importing a
module is low; a line that does more than that (runs programs, decodes and executes,
reaches the network) is high, critical when the usual co-occurrences show.
"""

from __future__ import annotations

import ast

from bastion.findings import Finding, Location, Severity
from bastion.supply.heuristics import rules
from bastion.supply.heuristics.python_ast import analyze_source
from bastion.supply.heuristics.verdicts import STRONG, Source, module_findings

#: Lines of one .pth file looked at, and characters of one line analysed.
MAX_LINES = 10_000
MAX_LINE = 64 << 10
#: Executable lines reported one by one; the rest are counted.
MAX_REPORTED = 20


def is_executable(line: str) -> bool:
    """What site.py executes: ``import`` then a space or a tab, at the very start."""
    return line.startswith(("import ", "import\t"))


def looks_like_pth(head: bytes) -> bool:
    """Text, not a PyTorch checkpoint also named ``.pth`` (a zip or a pickle)."""
    if not head or b"\x00" in head or head.startswith((b"PK", b"\x80")):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 4  # a character cut by the head's end
    return True


def _imports(line: str) -> list[str]:
    try:
        tree = ast.parse(line)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]


def pth_findings(data: bytes, location: Location, shown: str) -> list[Finding]:
    """Findings for one .pth file's executable lines."""
    text = data.decode("utf-8", "replace")
    findings: list[Finding] = []
    executable = 0
    for number, raw in enumerate(text.splitlines()[:MAX_LINES], 1):
        line = raw.rstrip()[:MAX_LINE]
        if not is_executable(line):
            continue
        executable += 1
        if executable > MAX_REPORTED:
            continue
        # Padded so line numbers in the analysis are the file's.
        facts = analyze_source("\n" * (number - 1) + line)
        src = Source(location, shown, facts)
        strong = [s for s in facts.signals if s.kind in STRONG]
        modules = ", ".join(_imports(line)[:8]) or "?"
        if strong:
            kinds = ", ".join(dict.fromkeys(s.kind.value for s in strong))
            message = (f"executes at every interpreter start and does more than import "
                       f"({kinds})")
            severity = Severity.HIGH
        else:
            message = f"executes at every interpreter start: imports {modules}"
            severity = Severity.LOW
        found = module_findings(src, role="pth")
        if any(f.severity is Severity.CRITICAL for f in found):
            severity = Severity.CRITICAL
        findings.append(src.finding(rules.PTH_EXEC, number, message, strong, severity,
                                    modules=_imports(line)[:20]))
        findings.extend(found)
    if executable > MAX_REPORTED:
        omitted = executable - MAX_REPORTED
        findings.append(rules.PTH_EXEC.finding(
            location, f"{omitted} more executable lines were not reported one by one",
            severity=Severity.HIGH, properties={"omitted": omitted}))
    return findings
