"""pip requirements files, parsed line by line with :class:`packaging.requirements.Requirement`.

pip's own parser is not a public API (and would fetch ``-r https://...``), so this follows its
documented line format: ``\\`` continuations, ``#`` comments, ``-r``/``-c`` includes (relative
to the including file, cycles and depth bounded), ``-e`` editables and URLs (reported as not
auditable: there is no version to match), per-requirement ``--hash`` options, markers, extras,
and options lines such as ``--index-url`` (ignored). Every bad line is a skipped record.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from bastion.findings import clip
from bastion.supply.inventory.interface import (
    MAX_DEPENDENCIES,
    MAX_LINE_CHARS,
    MAX_LINES,
    MAX_MANIFEST_BYTES,
    Dependency,
    Inventory,
    SkipKind,
    SkippedDependency,
    decode,
    normalize,
)
from bastion.supply.names import manifest_kind

#: Deepest ``-r`` nesting followed; pip has no limit, a hostile tree of includes would.
MAX_INCLUDE_DEPTH = 8
#: Most files read through includes, and most bytes over all of them.
MAX_INCLUDE_FILES = 64
MAX_TOTAL_BYTES = 4 * MAX_MANIFEST_BYTES

_COMMENT = re.compile(r"(^|\s+)#.*$")
_INCLUDE = {"-r": False, "--requirement": False, "-c": True, "--constraint": True}
_EDITABLE = ("-e", "--editable")
#: Options that take a value and only steer pip (indexes, build settings): no dependency.
_VALUE_OPTIONS = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links",
                  "--trusted-host", "--only-binary", "--no-binary", "--use-feature",
                  "--config-settings", "--global-option", "--install-option", "--hash"}
_FLAG_OPTIONS = {"--no-index", "--pre", "--prefer-binary", "--require-hashes"}
_URLISH = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git\+|hg\+|svn\+|bzr\+|file:|\.|/|~)", re.I)
_ARCHIVE = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
#: ``name==version`` and nothing else: the common line, parsed without the full grammar.
_SIMPLE_PIN = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*([0-9][\w.!+-]*)")


@dataclass(frozen=True)
class LogicalLine:
    """A requirement line after joining ``\\`` continuations: its physical line span."""

    start: int  # 1-based
    end: int  # 1-based, inclusive
    text: str


def logical_lines(text: str) -> Iterator[LogicalLine]:
    """pip's ``join_lines``: a trailing backslash continues a line unless it is a comment."""
    parts: list[str] = []
    start = 0
    # Lazily, line by line: a hostile file of millions of lines stops at the line limit
    # without first being split into millions of strings.
    lines = (line.rstrip("\r\n") for line in io.StringIO(text, newline=""))
    for number, raw in enumerate(lines, 1):
        is_comment = bool(_COMMENT.match(raw))
        if raw.endswith("\\") and not is_comment:
            if not parts:
                start = number
            parts.append(raw[:-1])
            continue
        line = " " + raw if is_comment else raw
        if parts:
            parts.append(line)
            yield LogicalLine(start, number, "".join(parts))
            parts = []
        else:
            yield LogicalLine(number, number, line)
    if parts:  # a continuation at end of file
        yield LogicalLine(start, start + len(parts) - 1, "".join(parts))


def strip_comment(line: str) -> str:
    return _COMMENT.sub("", line).strip()


def split_options(line: str) -> tuple[str, list[str]]:
    """pip's ``break_args_options``: the requirement, then the ``--option`` tokens."""
    tokens = line.split(" ")
    for index, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:index]).strip(), [t for t in tokens[index:] if t]
    return line.strip(), []


@lru_cache(maxsize=4096)
def pep440(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def exact_version(req: Requirement) -> str | None:
    """The version a requirement pins (``==1.2`` or ``===1.2``), else None."""
    for spec in req.specifier:
        if spec.operator in ("==", "===") and not spec.version.endswith(".*"):
            return spec.version
    return None


def matches_name(name: str) -> bool:
    return manifest_kind(name) == "requirements"


@dataclass
class _State:
    """What one read accumulates over a file and its includes, with its budgets."""

    follow: Callable[[Path], bool]
    deps: list[Dependency] = field(default_factory=list)
    skipped: list[SkippedDependency] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    lines: int = 0
    bytes: int = 0
    files: int = 0
    stopped: bool = False


class RequirementsReader:
    """``requirements*.txt``, ``constraints*.txt`` and pip-tools ``*.in`` files."""

    kind = "requirements"

    def matches(self, name: str) -> bool:
        return manifest_kind(name) == self.kind

    def read(self, data: bytes, source: str, *, truncated: bool = False) -> Inventory:
        """Parse bytes with no file system: includes are reported, not followed."""
        state = _State(follow=lambda _path: False)
        _parse(decode(data), source, None, state, (), constraint=False)
        if truncated:
            _truncated(state, source)
        return _inventory(source, state)

    def read_path(self, path: Path, display: str,
                  follow: Callable[[Path], bool] = lambda _p: True) -> Inventory:
        """Parse a file on disk and the ``-r``/``-c`` files it names (``follow`` decides)."""
        state = _State(follow=follow)
        _parse_file(path, display, state, (), constraint=False)
        return _inventory(display, state)


def _inventory(source: str, state: _State) -> Inventory:
    return Inventory(source=source, kind="requirements", dependencies=tuple(state.deps),
                     skipped=tuple(state.skipped), pins_expected=True,
                     hashes_expected=True,
                     includes=tuple(state.includes))


def _truncated(state: _State, source: str) -> None:
    state.skipped.append(SkippedDependency(
        source, None, "", f"only the first {MAX_MANIFEST_BYTES} bytes were read; the rest of "
        "the file was not audited", SkipKind.TOO_LARGE))


def _parse_file(path: Path, display: str, state: _State, stack: tuple[Path, ...],
                *, constraint: bool, line: int | None = None, parent: str = "") -> None:
    try:
        real = path.resolve()
        with path.open("rb") as handle:
            budget = min(MAX_MANIFEST_BYTES, MAX_TOTAL_BYTES - state.bytes)
            data = handle.read(budget + 1)
    except OSError as exc:
        state.skipped.append(SkippedDependency(parent or display, line, display,
                                               f"cannot read {display}: {exc.strerror or exc}",
                                               SkipKind.INCLUDE))
        return
    state.files += 1
    state.bytes += min(len(data), budget)
    if len(data) > budget:
        data = data[:budget]
        _truncated(state, display)
    if stack:
        state.includes.append(display)
    _parse(decode(data), display, real, state, stack, constraint=constraint)


def _parse(text: str, source: str, path: Path | None, state: _State,
           stack: tuple[Path, ...], *, constraint: bool) -> None:
    here = (*stack, path) if path is not None else stack
    for logical in logical_lines(text):
        if state.stopped:
            return
        state.lines += 1
        if state.lines > MAX_LINES or len(state.deps) >= MAX_DEPENDENCIES:
            state.stopped = True
            state.skipped.append(SkippedDependency(
                source, logical.start, "", f"more than {MAX_LINES} lines or "
                f"{MAX_DEPENDENCIES} requirements; the rest was not audited", SkipKind.TOO_LARGE))
            return
        if len(logical.text) > MAX_LINE_CHARS:
            state.skipped.append(SkippedDependency(
                source, logical.start, logical.text[:80],
                f"line of {len(logical.text)} characters is over the limit of {MAX_LINE_CHARS}"))
            continue
        content = strip_comment(logical.text)
        if not content:
            continue
        if content.startswith("-"):
            _option(content, logical.start, source, path, state, here)
        else:
            _requirement(content, logical.start, source, state, constraint=constraint)


def _option(content: str, line: int, source: str, path: Path | None, state: _State,
            stack: tuple[Path, ...]) -> None:
    flag, value = _split_flag(content)
    if flag in _INCLUDE:
        _include(value, line, source, path, state, stack, constraint=_INCLUDE[flag])
    elif flag in _EDITABLE:
        state.skipped.append(SkippedDependency(
            source, line, clip(content, 200), "editable install: built from a local or VCS "
            "source, no published version to match against advisories", SkipKind.NOT_AUDITABLE))
    elif flag not in _VALUE_OPTIONS and flag not in _FLAG_OPTIONS:
        state.skipped.append(SkippedDependency(source, line, clip(content, 200),
                                               f"unknown option {flag!r}; pip would reject it"))


def _split_flag(content: str) -> tuple[str, str]:
    """``-r x``, ``-rx``, ``--requirement=x``, ``--requirement x`` → (flag, value)."""
    if content.startswith("--"):
        head, sep, rest = content.partition("=")
        if sep and " " not in head:
            return head, rest.strip()
        flag, _, rest = content.partition(" ")
        return flag, rest.strip()
    flag, rest = content[:2], content[2:]
    return flag, rest.strip()


def _include(value: str, line: int, source: str, path: Path | None, state: _State,
             stack: tuple[Path, ...], *, constraint: bool) -> None:
    def skip(reason: str) -> None:
        state.skipped.append(SkippedDependency(source, line, clip(value, 200), reason,
                                               SkipKind.INCLUDE))

    if not value:
        skip("include option without a file name")
        return
    if "://" in value:
        skip(f"remote include {value!r} not fetched: audits are offline")
        return
    if path is None:
        skip(f"include {value!r} not followed: no file system path for {source}")
        return
    target = path.parent / value
    display = str(Path(source).parent / value).replace("\\", "/")
    real = target.resolve()
    if real in stack or real == path:
        skip(f"include cycle: {value!r} is already being read")
    elif len(stack) > MAX_INCLUDE_DEPTH:
        skip(f"includes nested deeper than {MAX_INCLUDE_DEPTH}; {value!r} not read")
    elif state.files >= MAX_INCLUDE_FILES or state.bytes >= MAX_TOTAL_BYTES:
        skip(f"more than {MAX_INCLUDE_FILES} files or {MAX_TOTAL_BYTES} bytes of includes")
    elif not state.follow(target):
        return  # the caller audits that file on its own (bastion scan walks it)
    else:
        _parse_file(target, display, state, stack, constraint=constraint, line=line,
                    parent=source)


def _requirement(content: str, line: int, source: str, state: _State, *,
                 constraint: bool) -> None:
    spec, options = split_options(content)
    hashes = any(o.startswith("--hash") for o in options)
    raw = clip(content, 300)
    if "@" not in spec.split("://", 1)[0] and (
            _URLISH.match(spec) or spec.lower().endswith(_ARCHIVE)):
        dep = _from_filename(spec, line, source, raw, hashes, constraint)
        if dep is None:
            state.skipped.append(SkippedDependency(
                source, line, raw, "URL or local path: no published version to match "
                "against advisories", SkipKind.NOT_AUDITABLE))
        else:
            state.deps.append(dep)
        return
    simple = _SIMPLE_PIN.fullmatch(spec)
    if simple and pep440(simple.group(2)) is not None:
        name, version = simple.groups()
        state.deps.append(Dependency(
            name=normalize(name), version=version, specifier=f"=={version}", pinned=True,
            source=source, line=line, hashes=hashes, raw=raw, display_name=name,
            constraint=constraint))
        return
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        state.skipped.append(SkippedDependency(source, line, raw,
                                               f"not a valid requirement: {exc}"))
        return
    if req.url:
        state.skipped.append(SkippedDependency(
            source, line, raw, f"direct URL reference ({clip(req.url, 120)}): no published "
            "version to match against advisories", SkipKind.NOT_AUDITABLE))
        return
    version = exact_version(req)
    state.deps.append(Dependency(
        name=normalize(req.name), version=version, specifier=str(req.specifier),
        pinned=version is not None, source=source, line=line,
        markers=str(req.marker) if req.marker else None, extras=tuple(sorted(req.extras)),
        hashes=hashes, raw=raw, display_name=req.name, constraint=constraint))


def _from_filename(spec: str, line: int, source: str, raw: str, hashes: bool,
                   constraint: bool) -> Dependency | None:
    """A wheel or sdist named by URL or path still says its name and version."""
    if "+" in spec.split("://", 1)[0]:  # git+https://... : a VCS checkout
        return None
    last = spec.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        if last.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(last)
        else:
            name, version = parse_sdist_filename(last)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return Dependency(name=str(name), version=str(version), specifier=f"=={version}",
                      pinned=True, source=source, line=line, hashes=hashes, raw=raw,
                      display_name=str(name), constraint=constraint)
