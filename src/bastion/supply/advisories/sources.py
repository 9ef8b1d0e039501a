"""Where OSV records come from: a folder of YAML/JSON, an OSV ``all.zip``, or the bundle.

Every source yields ``(origin, record-or-error)`` pairs and is bounded: a record file over
:data:`MAX_RECORD_BYTES` is an error entry, not a read into memory; a zip is read member by
member with the same cap (so a compression bomb costs at most that much per member).
YAML is read with PyYAML's safe loader only (its C implementation where present).
"""

from __future__ import annotations

import json
import lzma
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bastion.errors import InputError

#: Largest single OSV record read; real ones are a few kilobytes, the largest ~1 MB.
MAX_RECORD_BYTES = 8 * 2**20
#: Most records read from one source (OSV's PyPI feed holds ~20,000).
MAX_RECORDS = 2_000_000
#: Largest bundle (decompressed) read.
MAX_BUNDLE_BYTES = 1 * 2**30
BUNDLE_FORMAT = "bastion-osv-bundle/1"

_SUFFIXES = (".json", ".yaml", ".yml")

#: One record read from a source: where it came from, and the record or why it failed.
Entry = tuple[str, Any | Exception]


def decode_record(name: str, data: bytes) -> Any:
    """A record from JSON or YAML bytes (chosen by suffix; YAML is a superset anyway)."""
    text = data.decode("utf-8")
    if name.endswith(".json"):
        return json.loads(text)
    import yaml  # only imports need it: keep it off the scan path

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - the safe loader, in C
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None


def _read_file(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"record file over {MAX_RECORD_BYTES} bytes")
    return data


def iter_folder(root: Path) -> Iterator[Entry]:
    """Every ``*.json`` / ``*.yaml`` record under a folder (links to folders not followed)."""
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(_SUFFIXES) or name.startswith("."):
                continue
            count += 1
            if count > MAX_RECORDS:
                yield str(root), ValueError(f"more than {MAX_RECORDS} records; the rest skipped")
                return
            path = Path(folder) / name
            try:
                yield str(path), decode_record(name, _read_file(path))
            except (OSError, ValueError, RecursionError) as exc:
                yield str(path), exc


def iter_zip(path: Path) -> Iterator[Entry]:
    """Every ``*.json`` record of an OSV export such as ``PyPI/all.zip``."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable zip file: {exc}") from None
    with archive:
        members = [i for i in archive.infolist() if i.filename.endswith(_SUFFIXES)]
        for count, info in enumerate(members, 1):
            origin = f"{path}:{info.filename}"
            if count > MAX_RECORDS:
                yield origin, ValueError(f"more than {MAX_RECORDS} records; the rest skipped")
                return
            try:
                with archive.open(info) as handle:
                    data = handle.read(MAX_RECORD_BYTES + 1)
                if len(data) > MAX_RECORD_BYTES:
                    raise ValueError(f"record over {MAX_RECORD_BYTES} bytes")
                yield origin, decode_record(info.filename, data)
            except (OSError, ValueError, RecursionError, zipfile.BadZipFile,
                    NotImplementedError, EOFError, lzma.LZMAError) as exc:
                yield origin, exc


def read_bundle(path: Path) -> dict[str, Any]:
    """The shipped snapshot: ``{"format", "source", "date", "records": [...]}``, xz-packed."""
    try:
        with lzma.open(path, "rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    except (OSError, lzma.LZMAError, EOFError) as exc:
        raise InputError(f"{path}: cannot read the advisory bundle: {exc}") from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise InputError(f"{path}: advisory bundle over {MAX_BUNDLE_BYTES} bytes")
    try:
        bundle = json.loads(data)
    except ValueError as exc:
        raise InputError(f"{path}: advisory bundle is not valid JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise InputError(f"{path}: not a Bastion advisory bundle ({BUNDLE_FORMAT})")
    return bundle


def iter_bundle(bundle: dict[str, Any], origin: str) -> Iterator[Entry]:
    records = bundle.get("records")
    for index, record in enumerate(records if isinstance(records, list) else []):
        yield f"{origin}#{index}", record


def iter_source(path: Path) -> Iterator[Entry]:
    """Records of a local source: a folder, a zip, a bundle, or one record file."""
    if path.is_dir():
        return iter_folder(path)
    if not path.is_file():
        raise InputError(f"advisory source not found: {path}",
                         hint="give a folder of OSV records, an OSV all.zip, or a URL")
    if zipfile.is_zipfile(path):
        return iter_zip(path)
    if path.name.endswith(".xz"):
        return iter_bundle(read_bundle(path), str(path))
    return iter([(str(path), _single(path))])


def _single(path: Path) -> Any:
    try:
        return decode_record(path.name, _read_file(path))
    except (OSError, ValueError, RecursionError) as exc:
        return exc
