"""What a model signature covers: the manifest, and the walk that lists a model's files.

The manifest is the OpenSSF model-signing one (``model_signing.manifest``): every file of the
model folder by relative POSIX path, each with a digest (``files`` method) or cut into
fixed-size shards with one digest each (``shards`` method, ``path:start:end``), plus the
serialization parameters needed to recompute it (hash, shard size, whether symbolic links
were followed, ignored paths). Bastion adds one optional field to the predicate, the size of
every file (empty files included, which the ``shards`` method cannot otherwise record);
model-signing verifiers ignore it, as the v1.0 predicate says unknown fields must be.

The walk refuses what a signature cannot honestly cover: symbolic links that lead outside
the folder or to a folder, and devices, FIFOs and sockets. It never follows anything named
in a signature: names in a signed manifest are only ever *compared* with the walk.

This module is on the path ``bastion verify`` runs before it starts hashing, so it imports
neither ``pathlib`` nor ``dataclasses`` (with ``inspect``, ~20 ms of start-up on the 2-vCPU
machines, every one of them a millisecond the hashing threads wait): its values are
named tuples and the walk works on ``str`` paths.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence

from bastion.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from pathlib import Path

#: Ignored in every folder signature unless the signer says otherwise: what model-signing
#: ignores by default, so a signature made by either verifies with the other.
DEFAULT_IGNORES: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")
#: The name model-signing's command line gives a signature.
DEFAULT_SIGNATURE_NAME = "model.sig"
#: model-signing's default shard size (1 GB): a verifier configured with its defaults
#: recomputes the same manifest.
DEFAULT_SHARD_SIZE = 1_000_000_000
#: Bounds on the walk: a hostile folder must not make verification endless.
MAX_FILES = 1_000_000
MAX_DEPTH = 64

FILES = "files"
SHARDS = "shards"
#: The serialization methods, the default first.
METHODS = (SHARDS, FILES)
HASH_TYPES = ("sha256", "blake2b", "blake3")


class ManifestError(ValueError):
    """A manifest that cannot be valid: the message says what is wrong."""


class Serialization(NamedTuple):
    """How the manifest was computed; recorded in the signature so verifiers recompute it."""

    method: str = SHARDS
    hash_type: str = "sha256"
    shard_size: int | None = DEFAULT_SHARD_SIZE
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()

    @property
    def algorithm(self) -> str:
        """The ``algorithm`` each resource carries (model-signing's naming)."""
        if self.method == SHARDS:
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"method": self.method, "hash_type": self.hash_type}
        if self.method == SHARDS:
            out["shard_size"] = self.shard_size  # an integer: model-signing writes a float
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out


class Resource(NamedTuple):
    """One digest of the manifest: a whole file, or the shard ``[start, end)`` of one."""

    path: str
    digest: bytes
    algorithm: str
    start: int | None = None
    end: int | None = None

    @property
    def name(self) -> str:
        if self.start is None:
            return self.path
        return f"{self.path}:{self.start}:{self.end}"

    def sort_key(self) -> tuple[tuple[str, ...], int, int]:
        """model-signing's order: by path components, then shard offsets."""
        return (_parts(self.path), self.start or 0, self.end or 0)


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p and p != ".")


class Manifest(NamedTuple):
    """A model as signed: its name, how it was hashed, and every digest."""

    model_name: str
    serialization: Serialization
    resources: tuple[Resource, ...]
    #: Bastion's extension: every file and its size. ``None`` when the signer did not record
    #: it (model-signing); then only files with at least one resource are known.
    sizes: Mapping[str, int] | None = None

    def by_path(self) -> dict[str, tuple[Resource, ...]]:
        """The resources of each file, shards in offset order."""
        grouped: dict[str, list[Resource]] = {}
        for resource in self.resources:
            grouped.setdefault(resource.path, []).append(resource)
        out = {p: tuple(sorted(rs, key=lambda r: r.start or 0)) for p, rs in grouped.items()}
        for path, size in (self.sizes or {}).items():
            if size == 0:
                out.setdefault(path, ())
        return out


def parse_resource_name(name: str, method: str) -> tuple[str, int | None, int | None]:
    """Split ``path:start:end`` (shards) or take the path (files); offsets are checked."""
    if method == FILES:
        return name, None, None
    path, sep1, rest = name.rpartition(":")
    path, sep2, start_text = path.rpartition(":")
    if not (sep1 and sep2 and start_text.isdigit() and rest.isdigit()):
        raise ManifestError(f"shard name {name!r} is not 'path:start:end'")
    start, end = int(start_text), int(rest)
    if end <= start:
        raise ManifestError(f"shard {name!r} ends before it starts")
    return path, start, end


def normalise_ignore(path: str) -> str:
    """An ignore entry as model-signing writes it: relative POSIX, no ``.``/``..`` parts
    (``PurePosixPath``'s reading of it: repeated slashes and ``.`` parts dropped)."""
    text = path.replace("\\", "/")
    parts = _parts(text)
    if text.startswith("/") or not parts or ".." in parts:
        raise ManifestError(f"ignore path {path!r} must be a relative path inside the folder")
    return "/".join(parts)


def is_ignored(rel: str, ignores: Iterable[str]) -> bool:
    """model-signing's rule: an ignored path ignores itself and everything under it."""
    return any(rel == p or rel.startswith(p + "/") for p in ignores)


# -- the walk ------------------------------------------------------------------------------------


class LocalFile(NamedTuple):
    """A file of the model on disk: its name in the manifest and where to read it."""

    rel: str  # "." for a model that is a single file
    path: str  # what to open: the file itself, or an in-folder link's target
    size: int
    link: bool = False


class Problem(NamedTuple):
    """An entry the walk refuses: an outside link, a special file, an unreadable folder."""

    rel: str
    reason: str


class Walk(NamedTuple):
    """What the walk found: the files to hash, and the entries it refused."""

    files: list[LocalFile]
    problems: list[Problem]

    @property
    def has_links(self) -> bool:
        return any(f.link for f in self.files)


def default_signature_name(model: str) -> str:
    """``FOLDER/model.sig`` for a folder (model-signing's name), ``FILE.sig`` for a file."""
    if os.path.isdir(model):
        return os.path.join(model, DEFAULT_SIGNATURE_NAME)
    return model.rstrip("/" + os.sep) + ".sig"


def default_signature(model: Path) -> Path:
    """:func:`default_signature_name` as a ``Path``."""
    from pathlib import Path

    return Path(default_signature_name(os.fspath(model)))


def relative_inside(folder: str | os.PathLike[str], path: str | os.PathLike[str]) -> str | None:
    """``path`` relative to ``folder`` (POSIX separators) when it lies inside that folder,
    links resolved; None when it does not, or when ``folder`` is a file. How a signature
    kept inside the folder it signs is left out of its own manifest."""
    if not os.path.isdir(folder):
        return None
    try:
        rel = os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    except ValueError:  # pragma: no cover - another drive on Windows
        return None
    if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
        return None
    return rel.replace(os.sep, "/")


def model_name(root: Path) -> str:
    """The informative model name model-signing records: the folder's (or file's) name."""
    name = root.name
    if not name or name == "..":
        name = os.path.basename(os.path.realpath(root))
    return name


def walk_model(root: str | os.PathLike[str], ignores: Sequence[str] = (), *,
               max_files: int = MAX_FILES) -> Walk:
    """Every file of the model at ``root`` (a folder, or one file), sorted, ignores applied."""
    out = Walk([], [])
    root = os.fspath(root)
    st = os.stat(root)  # follows a link given as the root itself, as the user meant
    if stat.S_ISREG(st.st_mode):
        out.files.append(LocalFile(".", os.path.realpath(root), st.st_size))
        return out
    if not stat.S_ISDIR(st.st_mode):
        raise ManifestError(f"{root} is neither a file nor a folder")
    real_root = os.path.realpath(root)
    stack: list[tuple[str, str, int]] = [(root, "", 0)]
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            out.problems.append(Problem(prefix or ".", f"cannot list folder: {exc.strerror}"))
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if is_ignored(rel, ignores):
                continue
            if len(out.files) >= max_files:
                out.problems.append(Problem(rel, f"more than {max_files} files; not walked"))
                return out
            _visit(entry, rel, depth, real_root, out, stack)
    out.files.sort(key=lambda f: _parts(f.rel))
    return out


def _visit(entry: os.DirEntry[str], rel: str, depth: int, real_root: str, out: Walk,
           stack: list[tuple[str, str, int]]) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        out.problems.append(Problem(rel, "file name is not valid UTF-8; a manifest cannot "
                                         "name it"))
        return
    try:
        if entry.is_symlink():
            _visit_link(entry.path, rel, real_root, out)
            return
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        out.problems.append(Problem(rel, f"cannot stat: {exc.strerror}"))
        return
    if stat.S_ISDIR(st.st_mode):
        if depth + 1 >= MAX_DEPTH:
            out.problems.append(Problem(rel, f"folder nesting deeper than {MAX_DEPTH}"))
        else:
            stack.append((entry.path, rel + "/", depth + 1))
    elif stat.S_ISREG(st.st_mode):
        out.files.append(LocalFile(rel, entry.path, st.st_size))
    else:
        out.problems.append(Problem(rel, "not a regular file (device, FIFO or socket)"))


def _visit_link(path: str, rel: str, real_root: str, out: Walk) -> None:
    """An in-folder link to a file is read as that file; anything else is refused."""
    target = os.path.realpath(path)
    shown = os.readlink(path)
    if not (target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)):
        out.problems.append(Problem(rel, f"symbolic link to {shown!r} leads outside the "
                                         "model folder"))
        return
    try:
        st = os.stat(target)
    except OSError:
        out.problems.append(Problem(rel, f"symbolic link to {shown!r}, which does not exist"))
        return
    if stat.S_ISREG(st.st_mode):
        out.files.append(LocalFile(rel, target, st.st_size, link=True))
    elif stat.S_ISDIR(st.st_mode):
        out.problems.append(Problem(rel, f"symbolic link to the folder {shown!r}; linked "
                                         "folders are not followed"))
    else:
        out.problems.append(Problem(rel, f"symbolic link to {shown!r}, not a regular file"))
