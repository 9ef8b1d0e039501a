"""Builders of real-layout packages for tests: sdists, wheels, installed distributions.

Archives are written with :mod:`tarfile` and :mod:`zipfile` (creating fixtures only); the
layouts follow what setuptools, build and pip write: an sdist's files under
``name-version/`` with ``PKG-INFO``, a wheel's ``name-version.dist-info/`` with
``METADATA``, ``WHEEL``, ``RECORD`` and optional ``entry_points.txt``.
"""

from __future__ import annotations

import io
import tarfile
import textwrap
import zipfile
from collections.abc import Mapping
from pathlib import Path

Files = Mapping[str, str | bytes]


def _bytes(data: str | bytes) -> bytes:
    return textwrap.dedent(data).lstrip("\n").encode() if isinstance(data, str) else data


def pkg_info(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\n"


def sdist(folder: Path, name: str, version: str, files: Files, *, fmt: str = "tar.gz",
          pkg_info_file: bool = True) -> Path:
    """``name-version.tar.gz`` (or ``.zip``/``.tar``) as ``python -m build --sdist`` lays out."""
    root = f"{name}-{version}"
    members = {"PKG-INFO": pkg_info(name, version)} if pkg_info_file else {}
    members.update(files)
    path = folder / f"{name}-{version}.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(f"{root}/{member}", _bytes(data))
        return path
    mode = {"tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz", "tar": "w"}[fmt]
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        directory = tarfile.TarInfo(root)
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for member, data in members.items():
            raw = _bytes(data)
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size = len(raw)
            archive.addfile(info, io.BytesIO(raw))
    return path


def wheel(folder: Path, name: str, version: str, files: Files, *, pure: bool = True,
          entry_points: str | None = None) -> Path:
    """``name-version-py3-none-any.whl`` with its dist-info."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    tag = "py3-none-any" if pure else "cp311-cp311-linux_x86_64"
    members = dict(files)
    members[f"{dist}/METADATA"] = pkg_info(name, version)
    members[f"{dist}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: "
                                f"{'true' if pure else 'false'}\nTag: {tag}\n")
    if entry_points is not None:
        members[f"{dist}/entry_points.txt"] = entry_points
    members[f"{dist}/RECORD"] = "".join(f"{m},,\n" for m in members) + f"{dist}/RECORD,,\n"
    path = folder / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, _bytes(data))
    return path


def installed(site: Path, name: str, version: str, files: Files, *,
              entry_points: str | None = None, extra_record: tuple[str, ...] = ()) -> Path:
    """An installed distribution in a site-packages folder, as pip leaves it."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(pkg_info(name, version))
    if entry_points is not None:
        (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for member, data in files.items():
        target = site / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_bytes(data))
    lines = [*files, *extra_record, f"{dist.name}/METADATA", f"{dist.name}/RECORD"]
    (dist / "RECORD").write_text("".join(f"{line},sha256=x,1\n" for line in lines))
    return dist / "RECORD"
