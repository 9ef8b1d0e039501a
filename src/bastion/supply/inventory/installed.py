"""An installed environment: ``*.dist-info/METADATA`` (and ``*.egg-info``) headers only.

Nothing in the environment is imported or run: not even its interpreter, whose start-up
would execute ``.pth`` files (a known malware foothold). ``--python PATH`` is mapped to its
``site-packages`` folders by the standard layouts (``bin/python`` → ``lib/python3.X/
site-packages``; ``Scripts\\python.exe`` → ``Lib\\site-packages``).
"""

from __future__ import annotations

from pathlib import Path

from bastion.supply.inventory.interface import (
    MAX_DEPENDENCIES,
    Dependency,
    Inventory,
    SkippedDependency,
    normalize,
    too_large,
)

#: Most bytes of a METADATA file read: the headers come first, the long description after.
MAX_METADATA_BYTES = 64 * 2**10
_SITE_GLOBS = ("lib/python3*/site-packages", "lib64/python3*/site-packages", "Lib/site-packages",
               "lib/python3*/dist-packages", "lib/python3/dist-packages",
               "local/lib/python3*/dist-packages")


def is_site_packages(folder: Path) -> bool:
    """A folder holding installed distributions' metadata."""
    try:
        return any(_is_dist(child) for child in folder.iterdir())
    except OSError:
        return False


def _is_dist(path: Path) -> bool:
    return path.name.endswith((".dist-info", ".egg-info"))


def site_packages_of(path: Path) -> list[Path]:
    """The site-packages folders of an interpreter path, a virtual env or a prefix."""
    path = path.absolute()  # not resolve(): a venv's python is a link to the base one
    if path.is_dir() and is_site_packages(path):
        return [path]
    prefix = path
    if path.is_file() or not path.exists():
        prefix = path.parent.parent if path.parent.name in ("bin", "Scripts") else path.parent
    found: list[Path] = []
    for pattern in _SITE_GLOBS:
        found.extend(sorted(p for p in prefix.glob(pattern) if p.is_dir()))
    return found


def read_environment(folder: Path, display: str) -> Inventory:
    """Every distribution installed in one site-packages folder, by its metadata headers."""
    deps: list[Dependency] = []
    skipped: list[SkippedDependency] = []
    try:
        entries = sorted(c for c in folder.iterdir() if _is_dist(c))
    except OSError as exc:
        return Inventory(display, "installed", skipped=(SkippedDependency(
            display, None, "", f"cannot list {display}: {exc.strerror or exc}"),))
    for entry in entries[:MAX_DEPENDENCIES]:
        shown = f"{display}/{entry.name}"
        dep = _distribution(entry, shown)
        if isinstance(dep, Dependency):
            deps.append(dep)
        else:
            skipped.append(SkippedDependency(shown, None, entry.name, dep))
    if len(entries) > MAX_DEPENDENCIES:
        skipped.append(too_large(display, f"more than {MAX_DEPENDENCIES} distributions"))
    return Inventory(display, "installed", tuple(deps), tuple(skipped))


def _distribution(entry: Path, shown: str) -> Dependency | str:
    if entry.is_dir():
        meta = entry / ("METADATA" if entry.name.endswith(".dist-info") else "PKG-INFO")
    else:
        meta = entry  # a single-file .egg-info
    try:
        with meta.open("rb") as handle:
            head = handle.read(MAX_METADATA_BYTES)
    except OSError as exc:
        return f"cannot read {meta.name}: {exc.strerror or exc}"
    headers = parse_headers(head.decode("utf-8", "replace"))
    name, version = headers.get("name"), headers.get("version")
    if not name or not version:
        return f"{meta.name} has no Name or Version header"
    return Dependency(name=normalize(name[0]), version=version[0], specifier=f"=={version[0]}",
                      pinned=True, source=f"{shown}/{meta.name}" if meta != entry else shown,
                      line=version[1], raw=f"{name[0]} {version[0]}", display_name=name[0])


def parse_headers(text: str) -> dict[str, tuple[str, int]]:
    """RFC 822-style core metadata headers up to the first blank line: key → (value, line)."""
    headers: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            headers.setdefault(key.strip().lower(), (value.strip(), number))
    return headers
