"""The malicious-package heuristics as a ``supply`` analyzer of ``bastion scan``.

What it claims, always by content except where a name is the convention:

* archives that are packages: wheels and eggs (zips with ``*.dist-info/WHEEL`` or
  ``EGG-INFO/PKG-INFO``) and sdists (a tar, compressed or not, or a zip, laid out under
  ``name-version/``). Zips are claimed from their magic and classified from their central
  directory in :meth:`analyze`; a zip that is no package yields nothing;
* ``*.pth`` files that are text (a PyTorch checkpoint named ``.pth`` is a zip or a pickle);
* ``*.dist-info/RECORD`` of an installed distribution: its listed Python files and
  metadata are read from the site-packages folder around it.

Members of archives are not claimed one by one (the package reading covers them), so a file
inside a wheel is analysed once even though the model capability's archive analyzer also
walks the wheel. The decompressed tar inside a claimed ``.tar.gz`` is not claimed again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from bastion.analyzer import Context, Target
from bastion.findings import Finding, Location, Severity
from bastion.rules import Rule
from bastion.scan.archive import inner_name
from bastion.supply.heuristics import binaries, metadata, rules, typosquat
from bastion.supply.heuristics.interface import ModuleFacts
from bastion.supply.heuristics.pth import looks_like_pth, pth_findings
from bastion.supply.heuristics.python_ast import analyze_source
from bastion.supply.heuristics.setup_py import hook_findings, read_setup
from bastion.supply.heuristics.sources import (
    MAX_SECONDS,
    Member,
    Package,
    archive_kind,
    peek_sdist,
    read_archive,
    read_installed,
)
from bastion.supply.heuristics.verdicts import Source, module_findings

#: Findings of one rule about one package listed one by one; the rest are counted.
MAX_PER_RULE = 25
#: Path components of files that are run as scripts, not imported.
_SCRIPT_DIRS = frozenset({"tests", "test", "testing", "examples", "example", "docs", "doc",
                          "scripts", "benchmarks", "benchmark", "tools", "bin", "ci", "demo",
                          "demos", "samples"})


class HeuristicsAnalyzer:
    """Malicious-package heuristics over sdists, wheels, .pth files and installed packages."""

    name = "supply-heuristics"
    capability = "supply"
    rules: tuple[Rule, ...] = rules.RULES

    def claims(self, target: Target) -> bool:
        nested = bool(target.location.members)
        base = target.name
        if base.lower().endswith(".pth") and not nested:
            return looks_like_pth(target.head)
        if base == "RECORD" and not nested:
            return _parent(target.location.path).endswith(".dist-info")
        kind = archive_kind(target)
        if kind == "zip":
            return True
        if kind in ("gzip", "bzip2", "xz", "tar"):
            if kind == "tar" and nested and _decompressed(target.location):
                return False  # the inside of a .tar.gz this analyzer already read
            return peek_sdist(target)
        return False

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        base = target.name
        if base.lower().endswith(".pth") and not target.location.members:
            with target.open() as stream:
                data = stream.read(1 << 20)
            return pth_findings(data, target.location, base)
        if base == "RECORD" and not target.location.members:
            record = Path(target.location.path)
            folder = Location(path=_parent(_parent(target.location.path)))
            return _capped(package_findings(read_installed(record), folder), folder)
        package = read_archive(target, ctx.policy.limits)
        if package is None:
            return []
        return _capped(package_findings(package, target.location), target.location)


def _parent(path: str) -> str:
    """The folder a file sits in, as displayed (``a/b/c`` → ``a/b``)."""
    path = path.replace("\\", "/")
    return path.rsplit("/", 1)[0] if "/" in path else "."


def _decompressed(location: Location) -> bool:
    """A member that is the decompressed content of its container (``x.tar`` in ``x.tar.gz``)."""
    container = location.members[-2] if len(location.members) > 1 else location.path
    container = container.replace("\\", "/").rsplit("/", 1)[-1]
    name = location.members[-1]
    return name == "<decompressed>" or name == inner_name(container)


# -- one package -------------------------------------------------------------------------------


def package_findings(package: Package, location: Location) -> Iterator[Finding]:
    """Every heuristic over one package's files."""
    yield from _coverage(package, location)
    facts: dict[str, ModuleFacts] = {}
    names: list[tuple[str, Location, str]] = []
    scripts: list[tuple[list[metadata.Script], Location, str]] = []
    # Shallow files first (setup.py, .pth files, top-level modules), so that a time limit
    # cuts the deepest ones.
    ordered = sorted(package.members, key=lambda m: (m.name != f"{package.root}setup.py",
                                                     m.name.count("/"), m.name))
    for done, member in enumerate(ordered):
        if time.monotonic() > package.deadline:
            left = sum(1 for m in ordered[done:] if m.data is not None)
            yield rules.NOT_ANALYSED.finding(location, f"time limit of {MAX_SECONDS:.0f} s "
                                             f"reached; {left} files were not analysed",
                                             properties={"files_left": left})
            break
        if member.data is None:
            continue
        lower = member.name.lower()
        where = location.child(member.name)
        if lower.endswith((".py", ".pyw")):
            yield from _python(package, member, where, facts, names, scripts)
        elif lower.endswith(".pth"):
            yield from pth_findings(member.data, where, member.name)
    yield from _metadata(package, location, facts, names, scripts)
    project = names[0][0] if names else None
    for found, where, shown in scripts:
        yield from metadata.shadow_findings(found, where, shown, project)
    yield from _binaries(package, location)
    if names:
        name, where, shown = names[0]
        squat = typosquat.check(name)
        if squat is not None:
            yield typosquat.finding(squat, where, name)


def _python(package: Package, member: Member, where: Location, facts: dict[str, ModuleFacts],
            names: list[tuple[str, Location, str]],
            scripts: list[tuple[list[metadata.Script], Location, str]]) -> Iterator[Finding]:
    assert member.data is not None
    parsed = analyze_source(member.data.decode("utf-8", "replace"))
    relative = member.name[len(package.root):] if member.name.startswith(package.root) else \
        member.name
    facts[relative] = parsed
    if parsed.problem:
        severity = Severity.INFO if parsed.problem.startswith("does not parse") else Severity.LOW
        yield rules.NOT_ANALYSED.finding(where, f"{member.name} {parsed.problem}",
                                         severity=severity)
    is_setup = package.kind == "sdist" and relative == "setup.py"
    parts = set(relative.split("/")[:-1])
    role = "setup" if is_setup else "script" if parts & _SCRIPT_DIRS or relative.endswith(
        ("setup.py", "conftest.py", "noxfile.py", "tasks.py")) else "module"
    src = Source(where, member.name, parsed)
    yield from module_findings(src, role=role)
    if is_setup:
        info = read_setup(parsed)
        yield from hook_findings(src, info)
        if info.name is not None:
            names.append((info.name[0], where.at(line=info.name[1]), member.name))
        if info.scripts:
            scripts.append(([metadata.Script(c, t, line or None) for c, t, line in info.scripts],
                            where, member.name))


def _metadata(package: Package, location: Location, facts: dict[str, ModuleFacts],
              names: list[tuple[str, Location, str]],
              scripts: list[tuple[list[metadata.Script], Location, str]]) -> Iterator[Finding]:
    found_names: list[tuple[str, Location, str]] = []
    for member in package.members:
        if member.data is None:
            continue
        base = member.name.rsplit("/", 1)[-1]
        folder = member.name[: -len(base)]
        where = location.child(member.name)
        in_meta = folder.endswith(".dist-info/") or folder == "EGG-INFO/"
        at_root = folder == package.root
        if base in ("PKG-INFO", "METADATA") and (in_meta or at_root):
            header = metadata.header_name(member.data)
            if header is not None:
                found_names.insert(0, (header[0], where.at(line=header[1]), member.name))
            # Dependencies named like popular packages: the same check as for manifests.
            yield from typosquat.typosquat_findings(
                (name, where.at(line=line)) for name, line in metadata.requirements(member.data))
        elif base == "entry_points.txt" and in_meta:
            scripts.append((metadata.ini_scripts(member.data), where, member.name))
        elif base == "setup.cfg" and at_root:
            scripts.append((metadata.ini_scripts(member.data), where, member.name))
            cfg = metadata.cfg_name(member.data)
            if cfg is not None:
                found_names.append((cfg[0], where.at(line=cfg[1]), member.name))
        elif base == "pyproject.toml" and at_root:
            pyproject = metadata.read_pyproject(member.data)
            if pyproject.name is not None:
                found_names.append((pyproject.name[0], where.at(line=pyproject.name[1]),
                                    member.name))
            scripts.append((pyproject.scripts, where, member.name))
            project = pyproject.name[0] if pyproject.name else None
            yield from metadata.backend_findings(pyproject, where, member.name, facts.get,
                                                 project)
    names[:0] = found_names


def _binaries(package: Package, location: Location) -> Iterator[Finding]:
    if package.kind == "installed":
        return
    wheel = next((m for m in package.members if m.name.count("/") == 1 and m.name.endswith(
        ".dist-info/WHEEL") and m.data is not None), None)
    pure = wheel is not None and wheel.data is not None and metadata.wheel_is_pure(wheel.data)
    for member in package.members:
        name = member.name
        where = location.child(name)
        disguised = member.native is not None and not binaries.has_binary_name(name)
        if package.kind == "sdist":
            if member.native is not None:
                yield rules.SDIST_BINARY.finding(
                    where, f"{member.native} binary {name!r} in a source distribution"
                    + (" behind a name that is not a binary's" if disguised else ""),
                    evidence=f"{name}: {member.native} ({member.size} bytes)",
                    severity=Severity.HIGH if disguised else Severity.MEDIUM,
                    properties={"format": member.native})
            elif binaries.binary_suffix(name):
                yield rules.SDIST_BINARY.finding(
                    where, f"{name!r} is named like a binary in a source distribution",
                    evidence=name, severity=Severity.LOW)
        elif member.native is not None:
            in_meta = ".dist-info/" in name or name.startswith("EGG-INFO/")
            if in_meta or disguised:
                where_said = "in the metadata folder" if in_meta else "behind a non-binary name"
                yield rules.WHEEL_BINARY.finding(
                    where, f"{member.native} binary {name!r} {where_said}",
                    evidence=f"{name}: {member.native}", severity=Severity.HIGH,
                    properties={"format": member.native})
            elif pure:
                yield rules.WHEEL_BINARY.finding(
                    where, f"{member.native} binary {name!r} in a wheel that declares itself "
                    "pure Python", evidence=f"{name}: {member.native}", severity=Severity.LOW,
                    properties={"format": member.native})


def _coverage(package: Package, location: Location) -> Iterator[Finding]:
    for name, message in package.problems:
        where = location.child(name) if name else location
        yield rules.NOT_ANALYSED.finding(where, message)
    for member in package.members:
        if member.note is not None:
            yield rules.NOT_ANALYSED.finding(location.child(member.name),
                                             f"{member.name}: {member.note}")


def _capped(findings: Iterable[Finding], location: Location) -> list[Finding]:
    """At most :data:`MAX_PER_RULE` findings per rule per package, then one that counts."""
    by_id = {rule.id: rule for rule in rules.RULES}
    seen: Counter[str] = Counter()
    kept: list[Finding] = []
    worst: dict[str, Severity] = {}
    for finding in findings:
        seen[finding.rule_id] += 1
        if seen[finding.rule_id] <= MAX_PER_RULE:
            kept.append(finding)
        else:
            worst[finding.rule_id] = max(worst.get(finding.rule_id, Severity.INFO),
                                         finding.severity)
    for rule_id, count in seen.items():
        if count > MAX_PER_RULE:
            kept.append(by_id[rule_id].finding(
                location, f"{count - MAX_PER_RULE} more findings of this kind in this package "
                "were left out", severity=worst[rule_id],
                properties={"omitted": count - MAX_PER_RULE}))
    return kept
