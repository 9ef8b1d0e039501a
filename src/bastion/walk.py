"""Walking the paths given to ``bastion scan``: files, folders, links, and their traps.

Directory loops through symbolic links, dangling links, FIFOs and device files (which would
block or never end when opened) and unreadable folders are reported, never followed blindly.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import UsageError
from bastion.findings import Finding, Location, Skipped
from bastion.policy import Policy
from bastion.rules import BROKEN_SYMLINK, SYMLINK_LOOP, UNREADABLE

#: Version-control folders are never walked: their objects duplicate the working tree.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})
#: Deeper folder nesting than this is reported and not walked further.
MAX_DEPTH = 64


@dataclass(frozen=True)
class FileEntry:
    path: Path  # to open
    display: str  # as reported
    size: int


WalkItem = FileEntry | Finding | Skipped


def check_roots(roots: Sequence[str]) -> None:
    """Fail fast, before any work, when a path given on the command line does not exist."""
    missing = [r for r in roots if not os.path.lexists(r)]
    if missing:
        raise UsageError(
            "path not found: " + ", ".join(repr(m) for m in missing),
            hint="check the spelling; paths are relative to the current directory",
        )


def _display(path: str) -> str:
    return path.replace(os.sep, "/")


def walk(roots: Sequence[str], policy: Policy) -> Iterator[WalkItem]:
    """Yield every regular file under the roots, plus findings and skips for the rest."""
    check_roots(roots)
    # Every file and folder walked so far, by (device, inode): links that lead to the same
    # place twice are walked once, so a lattice of links cannot blow up exponentially.
    seen: dict[tuple[int, int], str] = {}
    for root in roots:
        yield from _walk_root(root, policy, seen)


def _walk_root(
    root: str, policy: Policy, seen: dict[tuple[int, int], str]
) -> Iterator[WalkItem]:
    # Each stack entry: (path, display, keys of the real folders above it).
    stack: list[tuple[str, str, tuple[tuple[int, int], ...]]] = [(root, _display(root), ())]
    while stack:
        path, display, ancestors = stack.pop()
        if ancestors and policy.excluded(display):
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            yield BROKEN_SYMLINK.finding(
                Location(path=display), f"symbolic link to a missing target: {_target(path)}"
            )
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link that points at itself
                yield SYMLINK_LOOP.finding(Location(path=display), f"symbolic link loop: {exc}")
            else:
                yield UNREADABLE.finding(Location(path=display), f"cannot stat: {exc.strerror}")
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in ancestors:
                yield SYMLINK_LOOP.finding(
                    Location(path=display),
                    f"symbolic link leads back to an enclosing folder ({_target(path)}); "
                    "not followed",
                )
                continue
            first = seen.get(key)
            if first is not None:
                yield Skipped(path=display, reason=f"same folder as {first}")
                continue
            seen[key] = display
            if len(ancestors) >= MAX_DEPTH:
                yield Skipped(path=display, reason=f"folder nesting deeper than {MAX_DEPTH}")
                continue
            try:
                with os.scandir(path) as it:
                    names = sorted(entry.name for entry in it)
            except OSError as exc:
                yield UNREADABLE.finding(
                    Location(path=display), f"cannot list folder: {exc.strerror}"
                )
                continue
            chain = (*ancestors, key)
            # Reverse so the stack pops in sorted order: reports are deterministic.
            for name in reversed(names):
                if name in SKIPPED_DIRS:
                    continue
                child_display = name if display in ("", ".") else f"{display.rstrip('/')}/{name}"
                stack.append((os.path.join(path, name), child_display, chain))
        elif stat.S_ISREG(st.st_mode):
            if policy.excluded(display) and ancestors:
                continue
            first = seen.get(key)
            if first is not None:
                yield Skipped(path=display, reason=f"same file as {first}")
                continue
            seen[key] = display
            yield FileEntry(Path(path), display, st.st_size)
        else:
            kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "device, socket or special file"
            yield Skipped(path=display, reason=f"not a regular file ({kind}); not opened")


def _target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return path
