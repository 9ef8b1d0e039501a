"""The gate: walk the inputs, hand each file to the analyzers that claim it, apply the policy.

This is the whole of ``bastion scan`` as a library call: :func:`scan` returns a
:class:`~bastion.findings.Report` and never prints or exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bastion import __version__
from bastion.analyzer import HEAD_SIZE, Analyzer, Context, Registry, Target
from bastion.findings import Finding, Location, Report, ScanStats, Skipped
from bastion.policy import DEFAULT, Policy, apply_policy
from bastion.rules import ANALYZER_ERROR, EMPTY_MODEL_FILE, TOO_LARGE, UNREADABLE
from bastion.walk import FileEntry, WalkItem, walk

#: Called after each file: (display path, files done, files in all).
Progress = Callable[[str, int, int], None]

#: Why a file that no analyzer claims is skipped (the parallel runners say it the same way).
NOT_CLAIMED = "no analyzer claims this content"


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What the per-file pass found in one file: raw findings (before the policy), the skip,
    the notes its analyzers left, and whether it came from the result cache."""

    findings: tuple[Finding, ...] = ()
    skipped: Skipped | None = None
    notes: tuple[str, ...] = ()
    cached: bool = False


#: Runs the per-file pass (e.g. on worker processes, on Ray, through the result cache):
#: one outcome per entry, in the order of the entries, whatever order the work was done in.
FileRunner = Callable[[Sequence[FileEntry], Context, Progress | None], Sequence[FileOutcome]]

#: Extensions that make an empty file worth a note: a model or a manifest that failed to arrive.
_MODEL_LIKE = (
    ".pt", ".pth", ".bin", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".h5", ".hdf5",
    ".keras", ".pb", ".onnx", ".safetensors", ".gguf", ".ckpt", ".msgpack", ".txt", ".lock",
)


def analyze_target(
    target: Target, ctx: Context, claimants: list[Analyzer] | None = None
) -> Iterator[Finding]:
    """Run every claiming analyzer over one target; an analyzer crash becomes a finding."""
    if claimants is None:
        claimants = ctx.registry.claimants(target)
    for analyzer in claimants:
        try:
            yield from analyzer.analyze(target, ctx)
        except (Exception, RecursionError, MemoryError) as exc:  # fail closed, never crash
            import logging  # only on this error path: start-up does not pay for logging

            logging.getLogger(__name__).debug("analyzer %s failed on %s", analyzer.name,
                                              target.location, exc_info=True)
            yield ANALYZER_ERROR.finding(
                target.location,
                f"the {analyzer.name} analyzer failed: {type(exc).__name__}: {exc}",
                properties={"analyzer": analyzer.name},
            )


def file_target(entry: FileEntry) -> Target:
    """The target of a file on disk: its first bytes read once, reopened on demand."""
    with entry.path.open("rb") as handle:
        head = handle.read(HEAD_SIZE)
    path = entry.path
    return Target(Location(path=entry.display), entry.size, head, lambda: path.open("rb"))


def precheck(entry: FileEntry, policy: Policy) -> tuple[list[Finding], Skipped | None] | None:
    """The outcome of a file that is not analysed at all (too large, empty), else None."""
    location = Location(path=entry.display)
    if entry.size > policy.limits.max_file_size:
        return [TOO_LARGE.finding(
            location, f"{entry.size} bytes is over the limit of {policy.limits.max_file_size}"
        )], None
    if entry.size == 0:
        findings = []
        if entry.display.lower().endswith(_MODEL_LIKE):
            findings.append(EMPTY_MODEL_FILE.finding(location, "empty file (0 bytes)"))
        return findings, Skipped(path=entry.display, reason="empty file")
    return None


def scan_file(
    entry: FileEntry, ctx: Context, *, make_target: Callable[[FileEntry], Target] = file_target
) -> tuple[list[Finding], Skipped | None]:
    """Analyse one file on disk: the unit of work a parallel runner distributes."""
    early = precheck(entry, ctx.policy)
    if early is not None:
        return early
    location = Location(path=entry.display)
    try:
        target = make_target(entry)
    except OSError as exc:
        return [UNREADABLE.finding(location, f"cannot read: {exc.strerror or exc}")], None
    claimants = ctx.registry.claimants(target)
    if not claimants:
        return [], Skipped(path=entry.display, reason=NOT_CLAIMED)
    try:
        return list(analyze_target(target, ctx, claimants)), None
    except OSError as exc:  # the file vanished or broke mid-read
        return [UNREADABLE.finding(location, f"read failed: {exc.strerror or exc}")], None


def _sort_key(f: Finding) -> tuple[int, str, tuple[str, ...], int, str, str]:
    loc = f.location
    return (-f.severity.rank, loc.path, loc.members, loc.offset or loc.line or 0, f.rule_id,
            f.message)


def scan_paths(
    paths: Sequence[str | Path],
    policy: Policy = DEFAULT,
    *,
    registry: Registry | None = None,
    policy_source: str = "",
    progress: Progress | None = None,
    inputs: Iterable[WalkItem] = (),
    runner: FileRunner | None = None,
) -> Report:
    """Scan files and folders and return the report (findings sorted, policy applied).

    ``inputs`` are items found by other means than walking ``paths`` (files downloaded from a
    manifest's URLs, findings about its bad lines); ``runner`` does the per-file pass
    elsewhere (worker processes, Ray, the result cache: :mod:`bastion.scale`) — the report
    is the same either way.
    """
    started = datetime.now(UTC)
    clock = time.perf_counter()
    roots = [str(p) for p in paths]
    ctx = Context(policy=policy, registry=registry if registry is not None else Registry.default())

    findings: list[Finding] = []
    skipped: list[Skipped] = []
    entries: list[FileEntry] = []
    for item in (*walk(roots, policy), *inputs):
        if isinstance(item, FileEntry):
            entries.append(item)
        elif isinstance(item, Skipped):
            skipped.append(item)
        else:
            findings.append(item)

    analyzed = cached = 0
    total_bytes = sum(entry.size for entry in entries)
    if runner is None:
        for done, entry in enumerate(entries, 1):
            found, skip = scan_file(entry, ctx)
            findings.extend(found)
            if skip is not None:
                skipped.append(skip)
            else:
                analyzed += 1
            if progress is not None:
                progress(entry.display, done, len(entries))
    else:
        outcomes = runner(entries, ctx, progress)
        if len(outcomes) != len(entries):
            raise RuntimeError(f"the runner gave {len(outcomes)} outcomes for {len(entries)} "
                               "files")
        for outcome in outcomes:  # in walk order, as the serial pass would have
            findings.extend(outcome.findings)
            for note in outcome.notes:
                ctx.note(note)
            if outcome.skipped is not None:
                skipped.append(outcome.skipped)
            else:
                analyzed += 1
                cached += outcome.cached

    walked = [entry.display for entry in entries]
    for check in ctx.registry.checks:
        findings.extend(check(walked, findings, policy))

    findings = apply_policy(findings, policy, source=policy_source)
    findings.sort(key=_sort_key)
    return Report(
        tool_version=__version__,
        started=started,
        roots=tuple(roots),
        fail_on=policy.fail_on,
        findings=tuple(findings),
        skipped=tuple(sorted(skipped, key=lambda s: s.path)),
        stats=ScanStats(
            files=len(entries), bytes=total_bytes, analyzed=analyzed, cached=cached,
            seconds=round(time.perf_counter() - clock, 3),
        ),
        notes=tuple(ctx.notes),
    )
