"""The plug-in seam of ``bastion scan``: analyzers claim files and report findings.

An :class:`Analyzer` looks at a :class:`Target` (a file on disk, or a member inside an
archive) and says whether it claims it, from its content (magic bytes) or, for manifests,
its name. The engine hands each target to every *capability* that claims it: within one
capability (``"model"``, ``"supply"``, ...) the first analyzer in registry order wins, so a
specific format (PyTorch zip) is registered before a generic one (zip archive).

Analyzers never raise on a hostile file; they report it. An exception that escapes an
analyzer is caught by the engine and reported as ``SCAN-ANALYZER-ERROR`` (fail closed).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Protocol, runtime_checkable

from bastion.findings import Finding, Location
from bastion.policy import DEFAULT, Policy
from bastion.rules import Rule

#: How many leading bytes of each target are read once and shared by every ``claims``.
HEAD_SIZE = 4096


@dataclass(frozen=True)
class Target:
    """Something to analyse: its location, size, first bytes and a way to open it."""

    location: Location
    size: int
    head: bytes
    opener: Callable[[], IO[bytes]] = field(repr=False)
    #: How many containers deep this target sits (0 for a file on disk).
    depth: int = 0

    @property
    def name(self) -> str:
        """The last path component: the member name for a member, else the file name."""
        last = self.location.members[-1] if self.location.members else self.location.path
        return last.replace("\\", "/").rsplit("/", 1)[-1]

    def open(self) -> IO[bytes]:
        return self.opener()

    @classmethod
    def from_bytes(cls, data: bytes, location: Location, depth: int = 0) -> Target:
        return cls(location, len(data), data[:HEAD_SIZE], lambda: io.BytesIO(data), depth)


@runtime_checkable
class Analyzer(Protocol):
    """One format or manifest kind. Stateless: one instance serves every target."""

    @property
    def name(self) -> str:
        """Short unique name, e.g. ``"pickle"`` (a class attribute is fine)."""
        ...

    @property
    def capability(self) -> str:
        """The capability it belongs to; one analyzer per capability handles a target."""
        ...

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule it can raise, for the catalogue."""
        ...

    def claims(self, target: Target) -> bool:
        """Whether this analyzer handles the target. Must be cheap: look at ``head``."""
        ...

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        """Report findings about the target. Never load or execute it."""
        ...


class LazyAnalyzer:
    """An analyzer whose module is imported only when a target might be its.

    ``prefilter`` is a cheap test on the target's first bytes that never says "no" to content
    the real analyzer would claim; only when it says "maybe" is ``spec`` (``"module:Class"``)
    imported and its ``claims`` asked. Start-up then pays only for the formats actually met.
    """

    def __init__(self, spec: str, name: str, capability: str,
                 prefilter: Callable[[Target], bool]) -> None:
        self.spec = spec
        self.name = name
        self.capability = capability
        self.prefilter = prefilter
        self._real: Analyzer | None = None

    def load(self) -> Analyzer:
        if self._real is None:
            import importlib

            module, _, cls = self.spec.partition(":")
            self._real = getattr(importlib.import_module(module), cls)()
        return self._real

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.load().rules

    def claims(self, target: Target) -> bool:
        return self.prefilter(target) and self.load().claims(target)

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        return self.load().analyze(target, ctx)

    def __repr__(self) -> str:
        return f"LazyAnalyzer({self.spec!r})"


#: A whole-scan check: (display paths walked, findings so far, policy) -> more findings.
WholeScanCheck = Callable[[Sequence[str], Sequence[Finding], Policy], list[Finding]]


class Registry:
    """An ordered set of analyzers. ``Registry.default()`` is what ``bastion scan`` uses."""

    def __init__(self, analyzers: Iterable[Analyzer] = (),
                 checks: Iterable[WholeScanCheck] = ()) -> None:
        self._analyzers: list[Analyzer] = []
        #: Checks run once after the per-file pass, over every file walked (e.g. files the
        #: policy says must be signed that no signature covers).
        self.checks: list[WholeScanCheck] = list(checks)
        for analyzer in analyzers:
            self.register(analyzer)

    @classmethod
    def default(cls) -> Registry:
        from bastion.catalogue import default_analyzers, folder_checks

        return cls(default_analyzers(), folder_checks())

    def register(self, analyzer: Analyzer, *, first: bool = False) -> None:
        """Add an analyzer; ``first=True`` puts it ahead of those of its capability."""
        # (A LazyAnalyzer is checked when loaded: the protocol check would import it now.)
        if not isinstance(analyzer, LazyAnalyzer) and not isinstance(analyzer, Analyzer):
            raise TypeError(f"{analyzer!r} does not implement the Analyzer protocol")
        if any(a.name == analyzer.name for a in self._analyzers):
            raise ValueError(f"an analyzer named {analyzer.name!r} is already registered")
        if first:
            self._analyzers.insert(0, analyzer)
        else:
            self._analyzers.append(analyzer)

    def __iter__(self) -> Iterator[Analyzer]:
        return iter(self._analyzers)

    def __len__(self) -> int:
        return len(self._analyzers)

    def only(self, *capabilities: str) -> Registry:
        """A registry holding only the analyzers of the given capabilities."""
        return Registry(a for a in self._analyzers if a.capability in capabilities)

    def claimants(self, target: Target) -> list[Analyzer]:
        """The analyzers that handle this target: the first claimant of each capability.

        An analyzer whose ``claims`` raises is taken as claiming (fail closed): the stand-in
        re-raises from ``analyze``, so the engine reports it like any analyzer failure and
        the scan goes on.
        """
        chosen: dict[str, Analyzer] = {}
        for analyzer in self._analyzers:
            if analyzer.capability in chosen:
                continue
            try:
                claimed = analyzer.claims(target)
            except Exception as exc:
                chosen[analyzer.capability] = _ClaimFailed(analyzer, exc)
                continue
            if claimed:
                chosen[analyzer.capability] = analyzer
        return list(chosen.values())

    def rules(self) -> tuple[Rule, ...]:
        seen: dict[str, Rule] = {}
        for analyzer in self._analyzers:
            for rule in analyzer.rules:
                seen.setdefault(rule.id, rule)
        return tuple(seen.values())


class _ClaimFailed:
    """Stands in for an analyzer whose ``claims`` raised; analysing re-raises that error."""

    def __init__(self, analyzer: Analyzer, error: Exception) -> None:
        self.name = analyzer.name
        self.capability = analyzer.capability
        self.rules = analyzer.rules
        self._error = error

    def claims(self, target: Target) -> bool:
        return True

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        raise self._error


@dataclass
class Context:
    """What an analyzer may use besides its target: the policy, nested dispatch, and notes
    for the reader of the report (e.g. the advisory database's age)."""

    policy: Policy = DEFAULT
    registry: Registry = field(default_factory=Registry)
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """Add a note to the report (each distinct text once)."""
        if text not in self.notes:
            self.notes.append(text)

    def analyze_nested(self, target: Target) -> Iterator[Finding]:
        """Dispatch a member of a container (archive, zip-based format) to its analyzers.

        The caller checks depth limits and reports them; this only dispatches.
        """
        from bastion.engine import analyze_target

        yield from analyze_target(target, self)
