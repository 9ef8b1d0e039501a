"""The model registry: a model version is served only once it has been admitted.

Admission (:func:`admit`) runs the real scanner over the model (``bastion scan``, with the
policy's threshold; the policy's ``exclude`` globs are *not* applied, since a file the scan
skips could still be loaded), verifies its signature when the policy has a ``[sign]``
section, and records what was admitted: a content digest of every file, the scan summary,
the signer, how to load it and its input schema. A model with pickle-based files
(``.pkl``, ``.joblib``, ``.pt``, ...) must scan *clean*: not one active finding above
``info``, whatever the threshold, since loading it runs whatever the pickle says.

The files are hashed before and after the scan and the signature check, and admission is
refused if they changed in between: what was scanned is what was recorded. The gateway
calls :func:`verify_content` before it loads a model (and before a download), so a file
swapped on disk after admission is refused, naming the file.

Versions are immutable: ``"1"``, ``"2"``, ... unless given; a retired version stays in the
registry (and in the audit log's references) but is never served again.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Engine

from bastion.db import exclusive, storage_errors
from bastion.errors import UsageError
from bastion.findings import Report, Severity
from bastion.gateway.errors import AdmissionRefused, ModelIntegrityError, NotFound
from bastion.gateway.principals import check_name
from bastion.gateway.tables import VERSION_MAX, ModelRow
from bastion.policy import DEFAULT, Policy
from bastion.records import replace

LOADERS = ("onnx", "sklearn", "torchscript", "torch", "callable")
#: Loaders that import code named by ``factory`` (``module:function``).
FACTORY_LOADERS = ("torch", "callable")
DTYPES = ("float32", "float64", "int64", "int32", "uint8", "bool")
ADMITTED = "admitted"
RETIRED = "retired"
#: Bounds on a model folder: files hashed and recorded, and the input schema.
MAX_FILES = 10_000
MAX_DIMS = 8
MAX_SCHEMA_KEYS = 32
#: Files whose loading runs a pickle: admitted only after a clean scan.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt")
#: Findings shown in a refusal and kept in the scan summary.
_SHOWN = 10
_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")
_LOCK = "bastion.models"


@dataclass(frozen=True)
class ModelRecord:
    """One admitted model version, as the registry keeps it."""

    name: str
    version: str
    path: str
    digest: str
    loader: str
    input_schema: dict[str, Any]
    factory: str | None
    scan_summary: dict[str, Any]
    signer: str | None
    status: str
    admitted_at: datetime
    admitted_by: str = ""
    #: Every file at admission: (path relative to the model, "." for a file; size; sha256).
    files: tuple[tuple[str, int, str], ...] = ()
    retired_at: datetime | None = None

    @property
    def scan_clean(self) -> bool:
        """The admission scan found nothing above ``info`` (what a pickle loader needs)."""
        return self.scan_summary.get("clean") is True

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["admitted_at"] = self.admitted_at.isoformat()
        out["retired_at"] = self.retired_at.isoformat() if self.retired_at else None
        out["files"] = [list(f) for f in self.files]
        return out


# -- validation ----------------------------------------------------------------------------------


def check_version(version: str) -> str:
    return check_name(version, "version", limit=VERSION_MAX)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"input schema: {key} must be a finite number (got {value!r})")
    return float(value)


def _count(value: Any, key: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise UsageError(f"input schema: {key} must be an integer from 1 to {high} "
                         f"(got {value!r})")
    return value


def validate_input_schema(spec: Any) -> dict[str, Any]:
    """The schema as a plain dict, after the checks that need no model: ``shape`` a list of
    dimensions (positive integers, or null for free ones such as the batch), ``dtype`` one
    of :data:`DTYPES`, ``min``/``max`` finite with min <= max, ``max_batch`` and
    ``max_body_bytes`` positive integers. Accepts a dict or a pydantic model."""
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump(mode="json", exclude_none=True)
    if not isinstance(spec, Mapping):
        raise UsageError("input schema: expected a JSON object such as "
                         '{"shape": [null, 4], "dtype": "float32"}')
    data = dict(spec)
    if len(data) > MAX_SCHEMA_KEYS or not all(isinstance(k, str) for k in data):
        raise UsageError(f"input schema: at most {MAX_SCHEMA_KEYS} keys, all strings")
    shape = data.get("shape")
    if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= MAX_DIMS:
        raise UsageError(f"input schema: shape must be a list of 1 to {MAX_DIMS} dimensions "
                         f"(got {shape!r})")
    for dim in shape:
        if dim is not None:
            _count(dim, "each dimension of shape (or null)", 1 << 31)
    data["shape"] = list(shape)
    dtype = data.get("dtype")
    if dtype not in DTYPES:
        raise UsageError(f"input schema: dtype must be one of {', '.join(DTYPES)} "
                         f"(got {dtype!r})")
    low = _number(data["min"], "min") if data.get("min") is not None else None
    high = _number(data["max"], "max") if data.get("max") is not None else None
    if low is not None and high is not None and low > high:
        raise UsageError(f"input schema: min {low} is greater than max {high}")
    if data.get("max_batch") is not None:
        _count(data["max_batch"], "max_batch", 1 << 20)
    if data.get("max_body_bytes") is not None:
        _count(data["max_body_bytes"], "max_body_bytes", 1 << 30)
    _full_check(data)
    return data


def _full_check(data: dict[str, Any]) -> None:
    """The gateway's own :class:`~bastion.gateway.schema.InputSchema` (which enforces the
    schema on every request) has the last word, when its module is installed."""
    try:
        from bastion.gateway.schema import InputSchema
    except ImportError:  # pragma: no cover - the gateway extra without its schema module
        return
    try:
        InputSchema.parse(data)
    except ValueError as exc:
        raise UsageError(" ".join(str(exc).split())[:500]) from None


def _check_loader(loader: str, factory: str | None) -> None:
    if loader not in LOADERS:
        raise UsageError(f"unknown loader {loader!r}: use one of {', '.join(LOADERS)}")
    if loader in FACTORY_LOADERS and not factory:
        raise UsageError(f"the {loader} loader needs a factory: module:function")
    if factory is not None and (len(factory) > 256 or not _FACTORY.match(factory)):
        raise UsageError(f"factory {factory[:80]!r}: expected module.path:function")


# -- content digest -------------------------------------------------------------------------------


class _Unreadable(Exception):
    pass


def measure(path: Path) -> tuple[str, tuple[tuple[str, int, str], ...]]:
    """The content digest of a model and its files: a file's SHA-256, or for a folder the
    SHA-256 of its sorted ``path NUL size NUL sha256`` lines. Links that leave the folder,
    special files, more than :data:`MAX_FILES` files: refused (:class:`_Unreadable`)."""
    from bastion.sign.hashing import hash_files
    from bastion.sign.manifest import FILES, ManifestError, Serialization, walk_model

    try:
        walk = walk_model(path, (), max_files=MAX_FILES)
    except (OSError, ManifestError) as exc:
        raise _Unreadable(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if walk.problems:
        shown = "; ".join(f"{p.rel}: {p.reason}" for p in walk.problems[:3])
        raise _Unreadable(f"{path}: {shown}")
    if not walk.files:
        raise _Unreadable(f"{path} holds no files")
    hashed = hash_files(walk.files, Serialization(FILES, "sha256", None))
    if hashed.errors:
        raise _Unreadable("; ".join(str(e) for e in hashed.errors[:3]))
    sizes = {f.rel: f.size for f in walk.files}
    files = tuple((r.path, sizes[r.path], r.digest.hex()) for r in hashed.resources)
    if files[0][0] == "." and len(files) == 1:
        return f"sha256:{files[0][2]}", files
    lines = "".join(f"{rel}\0{size}\0{digest}\n" for rel, size, digest in files)
    return f"sha256:{hashlib.sha256(lines.encode('utf-8')).hexdigest()}", files


#: A model folder's files as the file system describes them, without reading a byte: path,
#: size, inode, modification and change time (nanoseconds) of each.
Stamp = tuple[tuple[str, int, int, int, int], ...]


def stamp(record: ModelRecord) -> Stamp | None:
    """The files of ``record``'s folder as the file system describes them (``None`` when
    it cannot be walked cleanly). Two equal stamps mean no file was written, replaced,
    added or removed in between: a write changes the change time, which no one can set back
    (only the clock), so an unchanged stamp lets a verified folder go unhashed."""
    from bastion.sign.manifest import ManifestError, walk_model

    try:
        walk = walk_model(Path(record.path), (), max_files=MAX_FILES)
        if walk.problems:
            return None
        out = []
        for f in walk.files:
            st = os.stat(f.path)
            out.append((f.rel, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
    except (OSError, ManifestError):
        return None
    return tuple(out)


def verify_content(record: ModelRecord) -> None:
    """Refuse (:class:`ModelIntegrityError`) a model whose files differ from admission."""
    root = Path(record.path)
    try:
        digest, files = measure(root)
    except _Unreadable as exc:
        raise ModelIntegrityError(f"{record.name}@{record.version}: {exc}") from None
    if digest == record.digest:
        return
    before = {rel: (size, sha) for rel, size, sha in record.files}
    after = {rel: (size, sha) for rel, size, sha in files}

    def shown(rel: str) -> str:
        return str(root) if rel == "." else f"{root}/{rel}"

    for rel, (_size, sha) in sorted(before.items()):
        if rel not in after:
            raise ModelIntegrityError(f"{shown(rel)} is missing since admission of "
                                      f"{record.name}@{record.version}")
        if after[rel][1] != sha:
            raise ModelIntegrityError(f"{shown(rel)} changed since admission of "
                                      f"{record.name}@{record.version}: sha256 "
                                      f"{after[rel][1]} != {sha}")
    added = sorted(after.keys() - before.keys())
    if added:
        raise ModelIntegrityError(f"{shown(added[0])} was added since admission of "
                                  f"{record.name}@{record.version}")
    raise ModelIntegrityError(f"{root} changed since admission of {record.name}@"
                              f"{record.version}: {digest} != {record.digest}")


# -- admission ------------------------------------------------------------------------------------


def _finding_line(f: Any) -> str:
    return f"{f.rule_id} ({f.severity.value}) at {f.location}: {f.message}"


def _refusal(name: str, findings: list[Any], why: str, report: Report) -> AdmissionRefused:
    lines = [f"  {_finding_line(f)}" for f in findings[:_SHOWN]]
    if len(findings) > _SHOWN:
        lines.append(f"  ... and {len(findings) - _SHOWN} more")
    return AdmissionRefused(f"{name}: admission refused: {why}\n" + "\n".join(lines), report)


def _summary(report: Report, clean: bool) -> dict[str, Any]:
    active = [f for f in report.active if f.severity > Severity.INFO]
    return {"tool_version": report.tool_version, "fail_on": report.fail_on.value,
            "counts": {s.value: n for s, n in report.counts().items() if n},
            "clean": clean, "files": report.stats.files, "seconds": report.stats.seconds,
            "findings": [{"rule": f.rule_id, "severity": f.severity.value,
                          "location": str(f.location)} for f in active[:_SHOWN]]}


def _verify_signature(path: Path, sig: Path, policy: Policy, name: str) -> str:
    from bastion.sign.analyzer import trust_from_policy
    from bastion.sign.verify import verify_model

    if not sig.is_file():
        raise AdmissionRefused(f"{name}: admission refused: the policy requires a signature "
                               f"([sign]) and there is none at {sig}")
    result = verify_model(path, sig, trust_from_policy(policy))
    if not result.verified or result.signer is None:
        problems = [f for f in result.findings if f.severity > Severity.INFO]
        lines = "\n".join(f"  {_finding_line(f)}" for f in problems[:_SHOWN])
        raise AdmissionRefused(f"{name}: admission refused: the signature {sig} does not "
                               f"verify\n{lines}")
    return result.signer


def admit(engine: Engine, name: str, path: str | Path, *, version: str | None = None,
          policy: Policy = DEFAULT, loader: str, input_schema: Any,
          factory: str | None = None, signature: str | Path | None = None,
          admitted_by: str | None = None, policy_source: str = "") -> ModelRecord:
    """Scan, verify and record a model version; :class:`AdmissionRefused` says why not."""
    check_name(name, "model name")
    if version is not None:
        check_version(version)
    _check_loader(loader, factory)
    schema = validate_input_schema(input_schema)
    if not os.path.lexists(path):
        raise UsageError(f"path not found: {path}")
    root = Path(path).resolve()
    try:
        digest, files = measure(root)
    except _Unreadable as exc:
        raise AdmissionRefused(f"{name}: admission refused: {exc}") from None

    from bastion.engine import scan_paths
    from bastion.sign.interface import default_signature

    sig = Path(signature).resolve() if signature else default_signature(root)
    # Every file is scanned (no excludes). [sign] require is left to the check below, which
    # is stricter (any [sign] section: a verified signature, wherever it lies) and, unlike
    # the scan, knows where a single file's signature is.
    scan_policy = replace(policy, exclude=(), sign=replace(policy.sign, require=()))
    report = scan_paths([root], scan_policy, policy_source=policy_source)
    if not report.passed:
        failing = list(report.failing)
        raise _refusal(name, failing, f"{len(failing)} finding(s) at or above "
                       f"{report.fail_on.value}", report)
    above_info = [f for f in report.active if f.severity > Severity.INFO]
    pickled = [rel for rel, _, _ in files
               if (root.name if rel == "." else rel).lower().endswith(PICKLE_SUFFIXES)]
    if pickled and above_info:
        raise _refusal(name, above_info, f"{pickled[0]} is pickle-based and is admitted only "
                       "after a clean scan", report)
    signer = None
    if policy.sign.active:
        signer = _verify_signature(root, sig, policy, name)
    try:
        again, _ = measure(root)
    except _Unreadable as exc:
        raise AdmissionRefused(f"{name}: admission refused: {exc}") from None
    if again != digest:
        raise AdmissionRefused(f"{name}: admission refused: {root} changed while it was "
                               "being scanned")
    row = {"name": name, "path": str(root), "digest": digest, "files": [list(f) for f in files],
           "loader": loader, "factory": factory, "input_schema": schema,
           "scan_summary": _summary(report, not above_info), "signer": signer,
           "status": ADMITTED, "admitted_at": datetime.now(UTC),
           "admitted_by": (admitted_by or _whoami())[:128], "retired_at": None}
    with storage_errors(engine), exclusive(engine, _LOCK) as conn:
        taken = set(conn.execute(select(ModelRow.version).where(ModelRow.name == name))
                    .scalars())
        if version is None:
            version = str(max((int(v) for v in taken if v.isdigit() and len(v) < 10),
                              default=0) + 1)
        elif version in taken:
            raise AdmissionRefused(f"{name}@{version} is already in the registry; versions "
                                   "are immutable: admit a new version")
        conn.execute(insert(ModelRow).values(version=version, **row))
    return _record({**row, "version": version})


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        return f"uid:{os.getuid()}"


def _record(row: Mapping[Any, Any]) -> ModelRecord:
    return ModelRecord(
        name=row["name"], version=row["version"], path=row["path"], digest=row["digest"],
        loader=row["loader"], input_schema=dict(row["input_schema"] or {}),
        factory=row["factory"], scan_summary=dict(row["scan_summary"] or {}),
        signer=row["signer"], status=row["status"], admitted_at=row["admitted_at"],
        admitted_by=row["admitted_by"],
        files=tuple((str(f[0]), int(f[1]), str(f[2])) for f in row["files"] or ()),
        retired_at=row["retired_at"])


_COLUMNS = [c for c in ModelRow.__table__.columns if c.name != "id"]


def get(engine: Engine, name: str, version: str | None = None, *,
        include_retired: bool = False) -> ModelRecord:
    """The latest admitted version of ``name``, or the version given; :class:`NotFound`
    when there is none (or it is retired, unless ``include_retired``)."""
    query = select(*_COLUMNS).where(ModelRow.name == name)
    if version is None:
        query = query.where(ModelRow.status == ADMITTED).order_by(ModelRow.id.desc()).limit(1)
    else:
        query = query.where(ModelRow.version == version)
    with storage_errors(engine), engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no admitted model {name!r}" if version is None
                       else f"no model {name}@{version}")
    if row["status"] != ADMITTED and not include_retired:
        raise NotFound(f"{name}@{version} is retired")
    return _record(row)


def list_models(engine: Engine, name: str | None = None, *,
                include_retired: bool = True) -> list[ModelRecord]:
    """Every version (of ``name``), by name then admission order."""
    query = select(*_COLUMNS).order_by(ModelRow.name, ModelRow.id)
    if name is not None:
        query = query.where(ModelRow.name == name)
    if not include_retired:
        query = query.where(ModelRow.status == ADMITTED)
    with storage_errors(engine), engine.connect() as conn:
        return [_record(row) for row in conn.execute(query).mappings()]


def retire(engine: Engine, name: str, version: str) -> ModelRecord:
    """Stop serving ``name@version`` (kept in the registry; retiring twice changes nothing)."""
    with storage_errors(engine), engine.begin() as conn:
        conn.execute(update(ModelRow)
                     .where(ModelRow.name == name, ModelRow.version == version,
                            ModelRow.status == ADMITTED)
                     .values(status=RETIRED, retired_at=datetime.now(UTC)))
    return get(engine, name, version, include_retired=True)
