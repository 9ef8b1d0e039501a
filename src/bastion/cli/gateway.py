"""``bastion models``, ``keys``, ``access`` and ``audit-log``: the gateway's state.

Every command takes ``--db URL`` (``$BASTION_DB_URL``; default a SQLite file under
``~/.bastion``) and ``--db-schema`` for PostgreSQL. Exit codes: 0 done; 1 the model was
refused at admission (its scan or its signature: the same meaning as ``bastion scan``'s 1),
or ``audit-log verify`` found the chain broken; 2 anything else that went wrong (a usage
error, an unknown model or key, a separation-of-duties refusal, an unreachable database),
as one line on standard error.

Nothing heavy is imported until a command runs: SQLAlchemy, argon2 and the scanner load in
the command's body, so ``bastion scan`` never pays for them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bastion.cli.common import (
    EXIT_FINDINGS,
    FAIL_ON,
    POLICY,
    Severity,
    fail,
    guarded,
    resolve_policy,
    stderr_console,
)
from bastion.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from bastion.gateway.registry import ModelRecord

_APP = {"no_args_is_help": True, "add_completion": False, "rich_markup_mode": None}
models_app = typer.Typer(help="Admit, list, show and retire model versions (the gateway's "
                         "registry).", **_APP)  # type: ignore[arg-type]
keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.",
                       **_APP)  # type: ignore[arg-type]
access_app = typer.Typer(help="Grant, revoke and check per-model permissions.",
                         **_APP)  # type: ignore[arg-type]
audit_log_app = typer.Typer(help="Verify and export the gateway's hash-chained audit log.",
                            **_APP)  # type: ignore[arg-type]

DB = typer.Option(None, "--db", envvar="BASTION_DB_URL", metavar="URL",
                  help="Database: sqlite:///PATH or postgresql://USER@HOST/DB "
                       "(default: ~/.bastion/bastion.db).")
DB_SCHEMA = typer.Option(None, "--db-schema", envvar="BASTION_DB_SCHEMA",
                         help="PostgreSQL schema holding the tables.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON.")
#: Largest --schema file read.
MAX_SCHEMA_FILE = 64 * 1024
_DURATION = re.compile(r"(\d{1,6})([smhdw])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@contextmanager
def _guard() -> Iterator[None]:
    """One line and exit 2 for every gateway error; an admission refusal exits 1 with the
    blocking findings listed."""
    with guarded():
        from bastion.db import StorageError
        from bastion.gateway.errors import AdmissionRefused, GatewayError

        try:
            yield
        except AdmissionRefused as exc:
            first, *rest = str(exc).splitlines() or ["admission refused"]
            console = stderr_console()
            console.print(f"error: {first}", style="bold red", markup=False, highlight=False)
            for line in rest:
                console.print(line, markup=False, highlight=False)
            raise typer.Exit(EXIT_FINDINGS) from None
        except (StorageError, GatewayError) as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@contextmanager
def _engine(url: str | None, schema: str | None) -> Iterator[Engine]:
    from bastion.gateway.tables import open_db

    engine = open_db(url, schema=schema)
    try:
        yield engine
    finally:
        engine.dispose()


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _listing(items: Sequence[Any], as_json: bool, empty: str,
             line: Callable[[Any], str]) -> None:
    """A list command's output: JSON (``to_dict`` of each), or one line each, or ``empty``."""
    if as_json:
        _print_json([item.to_dict() for item in items])
        return
    if not items:
        typer.echo(empty)
    for item in items:
        typer.echo(line(item))


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


# -- models ---------------------------------------------------------------------------------------


def _read_schema(path: Path) -> dict[str, Any]:
    from bastion.gateway.registry import validate_input_schema

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SCHEMA_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--schema {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_SCHEMA_FILE:
        raise UsageError(f"--schema {path}: larger than {MAX_SCHEMA_FILE} bytes")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--schema {path}: not valid JSON: {exc}") from None
    try:
        return validate_input_schema(parsed)
    except UsageError as exc:
        raise UsageError(f"--schema {path}: {exc.message}") from None


def _guess_loader(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix in (".skops", ".pkl", ".pickle", ".joblib"):
        return "sklearn"
    raise UsageError(f"cannot tell how to load {path.name}",
                     hint="give --loader onnx|sklearn|torchscript|torch|callable")


def _show_record(rec: ModelRecord) -> None:
    summary = rec.scan_summary
    counts = ", ".join(f"{n} {s}" for s, n in (summary.get("counts") or {}).items()) or "none"
    rows = [("model", f"{rec.name}@{rec.version}"), ("status", rec.status),
            ("path", rec.path), ("digest", rec.digest), ("files", str(len(rec.files))),
            ("loader", rec.loader + (f" ({rec.factory})" if rec.factory else "")),
            ("input", json.dumps(rec.input_schema)),
            ("scan", f"findings: {counts}; {'clean' if summary.get('clean') else 'not clean'}"
                     f" (fail-on {summary.get('fail_on', '?')}, bastion "
                     f"{summary.get('tool_version', '?')})"),
            ("signer", rec.signer or "unsigned"),
            ("admitted", f"{_when(rec.admitted_at)} by {rec.admitted_by}")]
    if rec.retired_at:
        rows.append(("retired", _when(rec.retired_at)))
    for key, value in rows:
        typer.echo(f"{key:>9}: {value}")


@models_app.command("add")
def models_add(
    name: str = typer.Argument(..., help="Model name.", show_default=False),
    path: Path = typer.Argument(..., help="Model file or folder.", show_default=False),
    version: str | None = typer.Option(None, "--version", help="Version (default: the next "
                                       "number: 1, 2, ...)."),
    loader: str | None = typer.Option(None, "--loader", help="onnx, sklearn, torchscript, "
                                      "torch or callable (default: from the file suffix)."),
    schema: Path = typer.Option(..., "--schema", dir_okay=False, help='Input schema (JSON): '
                                '{"shape": [null, 4], "dtype": "float32", "min": 0, "max": 1, '
                                '"max_batch": 64}.', show_default=False),
    factory: str | None = typer.Option(None, "--factory", help="module:function (torch and "
                                       "callable loaders)."),
    signature: Path | None = typer.Option(None, "--signature", dir_okay=False,
                                          help="Signature file (default: FOLDER/model.sig "
                                               "or FILE.sig)."),
    policy_file: Path | None = POLICY,
    fail_on: Severity | None = FAIL_ON,
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """Admit a model version: scan it, verify its signature if the policy says so, record it."""
    with _guard():
        from bastion.gateway import registry

        policy, source = resolve_policy(policy_file, fail_on)
        spec = _read_schema(schema)
        kind = loader or _guess_loader(path)
        with _engine(db, db_schema) as engine:
            rec = registry.admit(engine, name, path, version=version, policy=policy,
                                 loader=kind, input_schema=spec, factory=factory,
                                 signature=signature, policy_source=source)
        if as_json:
            _print_json(rec.to_dict())
        else:
            signed = f", signed by {rec.signer}" if rec.signer else ""
            typer.echo(f"admitted {rec.name}@{rec.version} ({rec.digest}, {len(rec.files)} "
                       f"file{'s' if len(rec.files) != 1 else ''}{signed})")


@models_app.command("list")
def models_list(
    name: str | None = typer.Argument(None, help="Only this model's versions."),
    admitted_only: bool = typer.Option(False, "--admitted", help="Hide retired versions."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """List model versions."""
    with _guard():
        from bastion.gateway import registry

        with _engine(db, db_schema) as engine:
            records = registry.list_models(engine, name, include_retired=not admitted_only)
        _listing(records, as_json, "no models",
                 lambda r: f"{r.name}@{r.version}  {r.status:<8}  {r.loader:<11}  "
                           f"{r.digest[:23]}…  {_when(r.admitted_at)}  {r.path}")


@models_app.command("show")
def models_show(
    name: str = typer.Argument(..., show_default=False),
    version: str | None = typer.Option(None, "--version", help="Default: the latest "
                                       "admitted."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """Show one model version: digest, scan summary, signer, loader, input schema."""
    with _guard():
        from bastion.gateway import registry

        with _engine(db, db_schema) as engine:
            rec = registry.get(engine, name, version, include_retired=version is not None)
        if as_json:
            _print_json(rec.to_dict())
        else:
            _show_record(rec)


@models_app.command("retire")
def models_retire(
    name: str = typer.Argument(..., show_default=False),
    version: str = typer.Argument(..., show_default=False),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
) -> None:
    """Stop serving a model version (it stays in the registry)."""
    with _guard():
        from bastion.gateway import registry

        with _engine(db, db_schema) as engine:
            rec = registry.retire(engine, name, version)
        typer.echo(f"retired {rec.name}@{rec.version}")


# -- keys -----------------------------------------------------------------------------------------


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``90m``, ``2w``, ``3600s``, or an ISO date/time (UTC if no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        delta = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        if delta.total_seconds() <= 0 or delta > timedelta(days=3660):
            raise UsageError(f"--expires {text}: between 1 second and 10 years")
        return now + delta
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--expires {text!r}: expected a duration (30d, 12h, 90m) or an ISO "
                         "date such as 2027-01-31") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@keys_app.command("create")
def keys_create(
    principal: str = typer.Option(..., "--principal", help="Who the key authenticates.",
                                  show_default=False),
    group: list[str] = typer.Option([], "--group", help="A group the principal belongs to "
                                    "(repeatable)."),
    expires: str | None = typer.Option(None, "--expires", help="Lifetime (30d, 12h) or "
                                       "expiry date (default: until revoked)."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""
    with _guard():
        from bastion.gateway.keys import create_key

        until = parse_expiry(expires) if expires else None
        with _engine(db, db_schema) as engine:
            issued = create_key(engine, principal, groups=group, expires=until)
        if as_json:
            _print_json({"key_id": issued.key_id, "secret": issued.secret,
                         "principal": issued.principal, "groups": list(issued.groups),
                         "expires_at": _when(issued.expires_at)})
        else:
            typer.echo(f"key id:  {issued.key_id}")
            typer.echo(f"secret:  {issued.secret}")
            typer.echo(f"for:     {issued.principal}"
                       + (f" (groups: {', '.join(issued.groups)})" if issued.groups else ""))
            typer.echo(f"expires: {_when(issued.expires_at) if issued.expires_at else 'never'}")
        stderr_console().print("warning: store the secret now: it is shown once and cannot "
                               "be shown again (only its hash is kept)", style="yellow",
                               markup=False, highlight=False)


@keys_app.command("list")
def keys_list(
    principal: str | None = typer.Option(None, "--principal", help="Only this principal's."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """List API keys (ids, owners, status; never the secrets)."""
    with _guard():
        from bastion.gateway.keys import list_keys

        with _engine(db, db_schema) as engine:
            infos = list_keys(engine, principal=principal)
        _listing(infos, as_json, "no keys",
                 lambda i: f"{i.key_id}  {i.status():<7}  {i.principal}"
                           + (f" [{', '.join(i.groups)}]" if i.groups else "")
                           + f"  created {_when(i.created_at)}  expires {_when(i.expires_at)}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id (from `bastion keys list`).",
                                 show_default=False),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
) -> None:
    """Revoke an API key: refused from the next request on."""
    with _guard():
        from bastion.gateway.keys import revoke

        with _engine(db, db_schema) as engine:
            info = revoke(engine, key_id)
        typer.echo(f"revoked {info.key_id} ({info.principal}) at {_when(info.revoked_at)}")


# -- access ---------------------------------------------------------------------------------------


def _separation_of_duties(flag: bool | None, policy_file: Path | None) -> bool:
    if flag is not None:
        return flag
    policy, _ = resolve_policy(policy_file)
    table = getattr(policy, "gateway", None) or {}
    value = table.get("separation-of-duties", table.get("separation_of_duties", True))
    if not isinstance(value, bool):
        raise UsageError(f"policy [gateway] separation-of-duties: expected true or false "
                         f"(got {value!r})")
    return value


@access_app.command("grant")
def access_grant(
    subject: str = typer.Argument(..., help="user:NAME or group:NAME (a bare name is a user).",
                                  show_default=False),
    model: str = typer.Argument(..., help="Model name, or '*' for every model.",
                                show_default=False),
    permissions: list[str] = typer.Argument(..., help="predict, scores, explain, download, "
                                            "admin.", show_default=False),
    separation_of_duties: bool | None = typer.Option(
        None, "--separation-of-duties/--no-separation-of-duties",
        help="Refuse black-box and white-box access to one model for one subject "
             "(default: the policy's [gateway] separation-of-duties, else on).",
        show_default=False),
    policy_file: Path | None = POLICY,
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
) -> None:
    """Grant permissions on a model to a user or a group."""
    with _guard():
        from bastion.gateway.access import grant, parse_permission

        perms = [parse_permission(p) for p in permissions]  # all valid before any is granted
        sod = _separation_of_duties(separation_of_duties, policy_file)
        with _engine(db, db_schema) as engine:
            for perm in perms:
                made = grant(engine, subject, model, perm, separation_of_duties=sod)
                typer.echo(f"granted {made.permission.value} on {made.model} to {made.subject}")


@access_app.command("revoke")
def access_revoke(
    subject: str = typer.Argument(..., show_default=False),
    model: str = typer.Argument(..., show_default=False),
    permissions: list[str] = typer.Argument(..., show_default=False),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
) -> None:
    """Revoke permissions (takes effect within a second in running gateways)."""
    with _guard():
        from bastion.gateway.access import parse_permission, revoke_grant

        perms = [parse_permission(p) for p in permissions]
        with _engine(db, db_schema) as engine:
            for perm in perms:
                gone = revoke_grant(engine, subject, model, perm)
                typer.echo(f"revoked {gone.permission.value} on {gone.model} from "
                           f"{gone.subject}")


@access_app.command("list")
def access_list(
    subject: str | None = typer.Option(None, "--subject", help="Only this subject's."),
    model: str | None = typer.Option(None, "--model", help="Only grants on this model."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """List grants."""
    with _guard():
        from bastion.gateway.access import list_grants

        with _engine(db, db_schema) as engine:
            grants = list_grants(engine, subject=subject, model=model)
        _listing(grants, as_json, "no grants",
                 lambda g: f"{g.subject}  {g.model}  {g.permission.value}  "
                           f"{_when(g.granted_at)} by {g.granted_by}")


@access_app.command("check")
def access_check(
    principal: str = typer.Argument(..., help="A user (alice) or a group (group:ml-team).",
                                    show_default=False),
    model: str = typer.Argument(..., show_default=False),
    group: list[str] = typer.Option([], "--group", help="Also count this group (repeatable; "
                                    "the groups of the user's active API keys always count)."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """Show a principal's permissions on a model, where each comes from, and any
    separation-of-duties conflict."""
    with _guard():
        from bastion.gateway.access import check, check_subjects, parse_subject
        from bastion.gateway.keys import list_keys
        from bastion.gateway.principals import Principal, check_name

        subject = parse_subject(principal)
        with _engine(db, db_schema) as engine:
            if subject.startswith("group:"):
                report = check_subjects(engine, [subject], model, label=subject)
            else:
                name = subject.removeprefix("user:")
                groups = {check_name(g, "group") for g in group}
                groups.update(g for k in list_keys(engine, principal=name)
                              if k.status() == "active" for g in k.groups)
                report = check(engine, Principal(name, frozenset(groups)), model)
        if as_json:
            _print_json(report.to_dict())
            return
        groups_note = f" (groups: {', '.join(report.groups)})" if report.groups else ""
        if not report.permissions:
            typer.echo(f"{report.principal}{groups_note} on {report.model}: no access "
                       "(deny by default)")
            return
        typer.echo(f"{report.principal}{groups_note} on {report.model}: "
                   + ", ".join(p.value for p in sorted(report.permissions,
                                                       key=list(report.sources).index)))
        for perm, sources in report.sources.items():
            typer.echo(f"  {perm.value:<9} from {'; '.join(sources)}")
        typer.echo(f"  separation of duties: {report.conflict or 'no conflict'}")


# -- audit-log ------------------------------------------------------------------------------------


@audit_log_app.command("verify")
def audit_verify(
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
    as_json: bool = JSON_OUT,
) -> None:
    """Recompute the hash chain: exit 1 when an entry was edited, deleted, inserted or
    moved."""
    with _guard():
        from bastion.gateway.audit import verify

        with _engine(db, db_schema) as engine:
            report = verify(engine)
        if as_json:
            _print_json(report.to_dict())
        elif report.ok:
            typer.echo(f"audit log verified: {report.entries} entries, last "
                       f"{report.last_seq} ({report.last_hash[:16]}…)")
        else:
            typer.echo(f"audit log BROKEN at entry {report.first_bad_seq}: {report.reason} "
                       f"({report.entries} entries verified before it)")
    if not report.ok:
        raise typer.Exit(EXIT_FINDINGS)


@audit_log_app.command("export")
def audit_export(
    output: Path | None = typer.Option(None, "--output", "-o", dir_okay=False,
                                       help="Write to this file (default: standard output)."),
    db: str | None = DB,
    db_schema: str | None = DB_SCHEMA,
) -> None:
    """Export every entry as JSON lines (with seq and hashes, for a SIEM to re-verify)."""
    with _guard():
        from bastion.gateway.audit import export_jsonl

        with _engine(db, db_schema) as engine:
            if output is None:
                count = export_jsonl(engine, sys.stdout)
                sys.stdout.flush()
            else:
                count = _export_file(engine, output)
        stderr_console().print(f"exported {count} entries", markup=False, highlight=False)


def _export_file(engine: Engine, output: Path) -> int:
    """Stream the export to a temporary file beside ``output``, then move it in place: a
    failure never leaves half an export where a whole one was."""
    import os
    import tempfile

    from bastion.gateway.audit import export_jsonl

    target = output.resolve()
    if not target.parent.is_dir():
        raise UsageError(f"--output {output}: folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            count = export_jsonl(engine, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
