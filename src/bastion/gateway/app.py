"""The FastAPI application behind ``bastion serve``.

Every model request goes through the same steps, in this order, and each refusal is audited
like a success:

1. body size (413) — before anything is parsed;
2. authentication (401): an API key (``bst_...``) or an OIDC bearer token;
3. the model must be admitted, served and visible to the caller (404 otherwise, so callers
   cannot enumerate models they have no right on); then the permission (403);
4. quota (429 with ``Retry-After``);
5. the input schema (413/422);
6. the model — loaded once per version, after re-checking its content digest (a version
   that fails to load is answered the same way, without another try, for ``refresh-seconds``;
   at most ``max-loaded-models`` versions stay loaded, and a retired or replaced version is
   unloaded when the registry is next read);
7. the model's attack detectors, when configured (:mod:`bastion.gateway.detectors`): a
   principal flagged for extraction is refused before step 4 in block mode; after the model
   answers, feature squeezing screens the inputs and the extraction monitor records them
   (403 ``blocked_adversarial``/``blocked_extraction``, or an ``alert:...`` audit reason);
8. the output shaped by permission (labels only / rounded scores / top-k);
9. the audit entry is committed before the answer leaves (every 200 is in the log).

Blocking work (database reads, the model) runs in one worker-thread hop per request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from bastion import __version__
from bastion.gateway import access, audit, keys, registry
from bastion.gateway.config import ConfigError, GatewayConfig, JWTSettings
from bastion.gateway.detectors import Detectors, Verdict
from bastion.gateway.errors import (
    AuthError,
    GatewayError,
    InputRejected,
    ModelIntegrityError,
    NotFound,
)
from bastion.gateway.loaders import Predictor, load_predictor, shape_output
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.principals import BLACK_BOX, WHITE_BOX, Permission, Principal
from bastion.gateway.quotas import MemoryQuotas, QuotaSpec, RedisQuotas
from bastion.gateway.schema import InputSchema

if TYPE_CHECKING:
    from bastion.gateway.tokens import JWTAuthenticator

log = logging.getLogger("bastion.gateway")

SERVICE = "bastion-gateway"
#: How long a request waits for its audit entry to commit before it is refused (503).
_AUDIT_WAIT = 30.0
_QUERY = frozenset({Permission.PREDICT, Permission.SCORES})
#: Load failures remembered at once. They are keyed by admitted versions only (a request
#: reaches the loader after the registry lookup), so this is a safety bound, rarely reached.
_MAX_FAILURES = 256


class _Refused(Exception):
    """A request ends here with ``status``; ``reason`` is the audit/metrics word."""

    def __init__(self, status: int, reason: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


@dataclass
class _Loaded:
    record: registry.ModelRecord
    schema: InputSchema
    predictor: Predictor


@dataclass
class _Call:
    """What the audit entry of one request needs to know, filled in as it goes."""

    client: str
    principal: str = "-"
    model: str = "-"
    version: str = "-"
    permission: str = "-"
    input_digest: str = ""
    output_summary: str = ""
    #: ``alert:extraction`` / ``alert:adversarial``: the audit reason of an answered request.
    alert: str = ""


class Gateway:
    """The services one gateway process holds: storage, caches, quotas, audit writer."""

    def __init__(self, config: GatewayConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        # First: a JWKS file that cannot be used stops start-up before any thread is started.
        self.jwt = jwt_authenticator(config.jwt) if config.jwt is not None else None
        self.keys = keys.KeyAuthenticator(engine)
        self.access = access.AccessCache(engine, ttl=config.refresh_seconds)
        self.quotas: MemoryQuotas | RedisQuotas = (
            RedisQuotas(config.redis_url, prefix=config.redis_prefix) if config.redis_url
            else MemoryQuotas())
        self.audit = audit.AuditWriter(audit.AuditLog(engine))
        self.metrics = GatewayMetrics()
        self.detectors = Detectors(config)
        self._records: dict[tuple[str, str | None], tuple[float, registry.ModelRecord]] = {}
        #: Loaded versions, least recently used first (at most ``max_loaded_models``).
        self._loaded: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()
        #: Versions whose load failed: until when, and the answer to give meanwhile.
        self._failed: dict[tuple[str, str], tuple[float, _Refused]] = {}
        self._load_lock = threading.Lock()  # one load at a time
        self._cache_lock = threading.Lock()  # short: reads and writes of the two above

    # -- the steps -------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        token = ""
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _Refused(401, "malformed", "use 'Authorization: Bearer <key or token>'",
                               {"WWW-Authenticate": "Bearer"})
            token = token.strip()
        else:
            token = request.headers.get("x-api-key", "").strip()
        if not token:
            raise _Refused(401, "missing", "credentials required",
                           {"WWW-Authenticate": "Bearer"})
        try:
            if token.startswith(keys.TOKEN_PREFIX) or self.jwt is None:
                return self.keys.authenticate(token)
            return self.jwt.authenticate(token)
        except AuthError as exc:
            raise _Refused(401, f"auth_{exc.reason}", exc.message,
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    def caller(self, request: Request, call: _Call) -> Principal:
        """The authenticated principal, named in the request's audit entry."""
        principal = self.authenticate(request)
        call.principal = principal.name
        return principal

    def record(self, name: str, version: str | None) -> registry.ModelRecord:
        if self.config.models is not None and name not in self.config.models:
            raise NotFound(name)
        now = time.monotonic()
        cached = self._records.get((name, version))
        if cached is not None and now - cached[0] < self.config.refresh_seconds:
            return cached[1]
        try:
            rec = registry.get(self.engine, name, version)
        except NotFound:
            # Retired (or never admitted): what was loaded of it is never served again.
            self._unload(name, None if version is None else {version})
            raise
        self._records[(name, version)] = (now, rec)
        if version is None:
            self._unload_stale(rec, cached[1].version if cached is not None else None)
        return rec

    def _unload_stale(self, current: registry.ModelRecord, previous: str | None) -> None:
        """After the registry named ``current`` as its model's current version: unload the
        version it replaced (``previous``; a request pinned to it loads it again), and every
        loaded version of the model the registry no longer serves (retired)."""
        if previous is not None and previous != current.version:
            self._unload(current.name, {previous})
        with self._cache_lock:
            others = {v for n, v in self._loaded if n == current.name} - {current.version}
        for version in others:  # loaded by pinned requests: still served?
            with suppress(NotFound):  # retired: record() unloads it
                self.record(current.name, version)  # cached for refresh_seconds, like theirs

    def _unload(self, name: str, versions: set[str] | None) -> None:
        """Drop the loaded ``versions`` of ``name`` (all of them for ``None``)."""
        with self._cache_lock:
            for key in [k for k in self._loaded
                        if k[0] == name and (versions is None or k[1] in versions)]:
                del self._loaded[key]
                log.info("unloaded %s@%s", *key)

    def authorize(self, principal: Principal, name: str, version: str | None,
                  wanted: frozenset[Permission], call: _Call) -> tuple[registry.ModelRecord,
                                                                        frozenset[Permission]]:
        held = self.access.permissions(principal, name)
        try:
            rec = self.record(name, version)
        except NotFound:
            rec = None
        if rec is None or not held:  # invisible: the same answer as a missing model
            raise _Refused(404, "not_found", f"no model {name!r}"
                           + (f" version {version!r}" if version else ""))
        call.version = rec.version
        if (self.config.separation_of_duties and held & BLACK_BOX and held & WHITE_BOX):
            # Granting refuses this; groups can still combine it. Deny until an admin fixes it.
            raise _Refused(403, "separation_of_duties",
                           f"black-box and white-box access to {name!r} held together "
                           "(see `bastion access check`)")
        if not held & wanted:
            need = " or ".join(sorted(p.value for p in wanted))
            raise _Refused(403, "forbidden", f"permission {need} on {name!r} is required")
        return rec, held

    def consume_quota(self, principal: Principal, name: str) -> None:
        q = self.config.quota_for(name)
        spec = QuotaSpec(rate=q.rate, burst=q.burst, per_day=q.per_day, per_month=q.per_month)
        decision = self.quotas.consume(f"{principal.name}|{name}", spec)
        self.metrics.quota(name, principal.name, day=decision.remaining_day,
                           month=decision.remaining_month)
        if not decision.allowed:
            retry = max(1, int(decision.retry_after + 0.999))
            raise _Refused(429, "rate_limited", f"quota exceeded ({decision.reason}); "
                           f"retry after {retry} s", {"Retry-After": str(retry)})

    def loaded(self, rec: registry.ModelRecord) -> _Loaded:
        """The version ``rec`` loaded, loading it first if need be. A version whose load
        failed is answered with the same error, without hashing or loading it again, for
        ``refresh_seconds``: a broken or hostile model cannot cost a hash per request."""
        key = (rec.name, rec.version)
        hit = self._held(key)
        if hit is not None:
            return hit
        with self._load_lock:
            hit = self._held(key)
            if hit is None:
                try:
                    loaded = self._load(rec)
                except Exception as exc:
                    self._failed_now(key, exc)
                    raise
                hit = self._keep(key, loaded)
        return hit

    def _held(self, key: tuple[str, str]) -> _Loaded | None:
        """The loaded version (now the most recently used), or ``None`` to load it; the
        remembered refusal while its last load failed less than ``refresh_seconds`` ago."""
        with self._cache_lock:
            hit = self._loaded.get(key)
            if hit is not None:
                self._loaded.move_to_end(key)
                return hit
            failed = self._failed.get(key)
            if failed is None:
                return None
            if time.monotonic() < failed[0]:
                refused = failed[1]
            else:  # time to try again (the file may have been put right)
                del self._failed[key]
                return None
        raise _Refused(refused.status, refused.reason, refused.message)

    @staticmethod
    def _load(rec: registry.ModelRecord) -> _Loaded:
        registry.verify_content(rec)  # a file swapped since admission is refused here
        schema = InputSchema.model_validate(rec.input_schema)
        predictor = load_predictor(rec.loader, Path(rec.path), factory=rec.factory,
                                   input_schema=schema, scan_clean=rec.scan_clean)
        return _Loaded(rec, schema, predictor)

    def _keep(self, key: tuple[str, str], loaded: _Loaded) -> _Loaded:
        with self._cache_lock:
            self._failed.pop(key, None)
            self._loaded[key] = loaded
            while len(self._loaded) > self.config.max_loaded_models:
                old, _ = self._loaded.popitem(last=False)
                log.info("unloaded %s@%s (least recently used)", *old)
        return loaded

    def _failed_now(self, key: tuple[str, str], exc: Exception) -> None:
        """Remember a failed load, with the answer it got, for ``refresh_seconds``."""
        if self.config.refresh_seconds <= 0:
            return
        now = time.monotonic()
        status, reason, message = _failure(exc)
        with self._cache_lock:
            if len(self._failed) >= _MAX_FAILURES:
                for old in [k for k, (until, _) in self._failed.items() if until <= now]:
                    del self._failed[old]
                while len(self._failed) >= _MAX_FAILURES:  # the oldest failure goes first
                    del self._failed[next(iter(self._failed))]
            self._failed[key] = (now + self.config.refresh_seconds,
                                 _Refused(status, reason, message))

    # -- handlers (run in a worker thread) -------------------------------------------------

    def predict(self, request: Request, body: bytes, name: str, version: str | None,
                call: _Call) -> dict[str, Any]:
        principal = self.caller(request, call)
        rec, held = self.authorize(principal, name, version, _QUERY, call)
        call.permission = (Permission.SCORES if Permission.SCORES in held
                           else Permission.PREDICT).value
        guard = self.detectors.guard(rec.name)
        refused = guard.refused(principal.name) if guard is not None else None
        if refused is not None:  # flagged for extraction earlier: no quota, no model call
            self.detected(rec.name, Verdict((refused,)), call)
        self.consume_quota(principal, name)
        call.input_digest = hashlib.sha256(body).hexdigest()
        model = self.loaded(rec)
        x = model.schema.coerce(_inputs(body))
        prediction = model.predictor.predict(x)
        call.output_summary = f"{len(prediction.labels)} predictions"
        if guard is not None:
            self.detected(rec.name, guard.screen(principal.name, x, prediction,
                                                 model.predictor, model.schema), call)
        out = shape_output(prediction, held & BLACK_BOX, precision=self.config.score_precision,
                           top_k=self.config.top_k)
        return {"model": rec.name, "version": rec.version, **out}

    def detected(self, name: str, verdict: Verdict, call: _Call) -> None:
        """Count a verdict's detections, refuse the request when one blocks it, else mark
        its audit entry with the alerts."""
        if not verdict.detections:
            return
        for detection in verdict.detections:
            self.metrics.detection(name, detection.detector, detection.action)
        call.output_summary = "; ".join(filter(None, [call.output_summary, verdict.summary]))
        blocked = verdict.blocked
        if blocked is not None:
            raise _Refused(403, f"blocked_{blocked.detector}",
                           f"refused by the {blocked.detector} detector: {blocked.message}")
        call.alert = verdict.alert

    def reset_detectors(self, request: Request, name: str, who: str | None,
                        call: _Call) -> dict[str, Any]:
        """Clear a principal's extraction flag on a model (admin on it or on ``*``)."""
        principal = self.caller(request, call)
        call.permission = "detectors-reset"
        if Permission.ADMIN not in self.access.permissions(principal, name):
            raise _Refused(403, "forbidden", f"admin on {name!r} is required")
        if not who or len(who) > 256:
            raise _Refused(400, "bad_request", "name the principal: ?principal=NAME")
        cleared = self.detectors.reset(name, who)
        call.output_summary = (f"extraction flag of {who} cleared" if cleared
                               else f"{who} was not flagged")
        return {"model": name, "principal": who, "cleared": cleared}

    def explain(self, request: Request, body: bytes, name: str, call: _Call) -> dict[str, Any]:
        principal = self.caller(request, call)
        rec, _held = self.authorize(principal, name, None, frozenset({Permission.EXPLAIN}),
                                    call)
        call.permission = Permission.EXPLAIN.value
        self.consume_quota(principal, name)
        call.input_digest = hashlib.sha256(body).hexdigest()
        model = self.loaded(rec)
        x = model.schema.coerce(_inputs(body))
        try:
            explanation = model.predictor.explain(x)
        except NotImplementedError:
            raise _Refused(501, "not_implemented",
                           f"the {rec.loader} loader cannot explain predictions") from None
        return {"model": rec.name, "version": rec.version, **explanation}

    def describe(self, request: Request, name: str, call: _Call) -> dict[str, Any]:
        principal = self.caller(request, call)
        rec, held = self.authorize(principal, name, None, frozenset(Permission), call)
        call.permission = "describe"
        return _describe(rec, held)

    def listing(self, request: Request, call: _Call) -> dict[str, Any]:
        principal = self.caller(request, call)
        call.permission = "list"
        models = []
        for rec in registry.list_models(self.engine):
            if rec.status != "admitted":
                continue
            if self.config.models is not None and rec.name not in self.config.models:
                continue
            held = self.access.permissions(principal, rec.name)
            if held:
                models.append(_describe(rec, held))
        return {"models": models}

    def download(self, request: Request, name: str, version: str | None, file: str | None,
                 call: _Call) -> _Download:
        principal = self.caller(request, call)
        rec, _held = self.authorize(principal, name, version, frozenset({Permission.DOWNLOAD}),
                                    call)
        call.permission = Permission.DOWNLOAD.value
        self.consume_quota(principal, name)
        root = Path(rec.path)
        if not root.is_file():
            registry.verify_content(rec)  # a folder: every file as admitted, none added
        path = _downloadable(root, file)
        rel = "." if path == root else path.relative_to(root.resolve()).as_posix()
        expected = {r: sha for r, _size, sha in rec.files}.get(rel)
        if expected is None:
            raise _Refused(404, "not_found", "no such file in this model")
        # What is sent is what was checked: the bytes are hashed from the same open file
        # they are then streamed from, so a file swapped after the check is never served.
        handle = _open_verified(path, expected, f"{rec.name}@{rec.version}")
        size = os.fstat(handle.fileno()).st_size
        call.output_summary = f"file {path.name} ({size} bytes)"
        return _Download(handle, path.name, size)

    def metrics_allowed(self, request: Request) -> None:
        if self.config.public_metrics:
            return
        principal = self.authenticate(request)
        if Permission.ADMIN not in self.access.permissions(principal, "*"):
            raise _Refused(403, "forbidden", "metrics need admin on '*'")


@dataclass
class _Download:
    handle: BinaryIO
    filename: str
    size: int

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.handle.read(1 << 20):
                yield chunk
        finally:
            self.handle.close()


def jwt_authenticator(settings: JWTSettings) -> JWTAuthenticator:
    """The bearer-token authenticator of ``settings``, its keys loaded now when they come
    from a file: a missing or unusable JWKS file is a :class:`ConfigError` naming it, at
    start-up, not a gateway that refuses every token. A JWKS URL is fetched on first use."""
    from bastion.gateway.tokens import JWKSError

    authenticator = settings.authenticator()
    try:
        authenticator.load_file()
    except JWKSError as exc:
        raise ConfigError(f"[gateway.jwt] jwks: {exc}") from None
    return authenticator


def _failure(exc: Exception) -> tuple[int, str, str]:
    """Status, reason and message of the answer to an error that is not a refusal."""
    if isinstance(exc, ModelIntegrityError):
        return 503, "integrity", str(exc)
    if isinstance(exc, GatewayError):
        return 503, "unavailable", f"{type(exc).__name__}: {exc}"
    return 500, "error", f"internal error ({type(exc).__name__})"


def _header_safe(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)


def _open_verified(path: Path, sha256: str, what: str) -> BinaryIO:
    """``path`` opened (links not followed), hashed to the end, and rewound; refused with
    :class:`ModelIntegrityError` when its SHA-256 is not the admitted one."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    handle = os.fdopen(fd, "rb")
    try:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != sha256:
            raise ModelIntegrityError(f"{path} changed since admission of {what}: sha256 "
                                      f"{digest} != {sha256}")
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


def _inputs(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise InputRejected(422, "the body is not valid JSON") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InputRejected(422, 'expected a JSON object {"inputs": [...]}')
    return payload["inputs"]


def _describe(rec: registry.ModelRecord, held: frozenset[Permission]) -> dict[str, Any]:
    return {"name": rec.name, "version": rec.version, "loader": rec.loader,
            "input_schema": rec.input_schema, "permissions": sorted(p.value for p in held)}


def _downloadable(root: Path, file: str | None) -> Path:
    """The one file to send: the model itself, or a named file inside a model folder."""
    if root.is_file():
        if file not in (None, "", root.name):
            raise _Refused(404, "not_found", f"no file {file!r} in this model")
        return root
    if not file:
        raise _Refused(400, "bad_request", "this model is a folder: name one file with ?file=")
    if len(file) > 1024 or "\0" in file or file.startswith(("/", "\\")):
        raise _Refused(404, "not_found", "no such file in this model")
    candidate = (root / file).resolve()
    real_root = root.resolve()
    if (real_root not in candidate.parents or candidate.is_symlink()
            or not candidate.is_file()):
        raise _Refused(404, "not_found", "no such file in this model")
    return candidate


def _error(status: int, reason: str, message: str,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": reason, "message": message}}, status_code=status,
                        headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _Refused(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise _Refused(413, "too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # gone mid-body: no one reads the answer, the audit log does
        raise _Refused(400, "client_disconnected", "the client left before sending the "
                       "whole body") from None
    return b"".join(chunks)


_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "type": "object", "required": ["inputs"],
            "properties": {"inputs": {"type": "array", "description":
                                      "a batch of inputs shaped as the model's input schema"}},
        }}},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text} for code, text in {
        401: "no or invalid credentials", 403: "permission missing",
        404: "no such model (or no permission on it)", 413: "body or batch too large",
        422: "input breaks the model's schema", 429: "quota exceeded (see Retry-After)",
        503: "model unavailable (integrity check failed or not loadable)",
    }.items()}


def create_app(config: GatewayConfig, engine: Engine | None = None) -> FastAPI:
    """The gateway application; ``engine`` defaults to ``config.db_url``."""
    from bastion.gateway.tables import open_db, prepare

    opened = engine is None
    if engine is None:
        engine = open_db(config.db_url, schema=config.db_schema)
    else:
        prepare(engine)
    try:
        gw = Gateway(config, engine)
    except BaseException:
        if opened:
            engine.dispose()
        raise

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(gw.audit.close)  # flush: every answered request is logged

    app = FastAPI(title="Bastion model gateway", version=__version__, lifespan=lifespan,
                  description="Admitted models behind authentication, per-model permissions, "
                              "quotas and a hash-chained audit log.")
    app.state.gateway = gw

    async def run(operation: str, call: _Call, work: Callable[[], Any]) -> Any:
        """Run ``work``, audit the outcome and map errors to answers, all in one worker
        thread: one hop per request, and the audit commit is awaited there."""
        return await run_in_threadpool(_serve, operation, call, work)

    async def with_body(request: Request, operation: str, call: _Call,
                        handle: Callable[[bytes], Any]) -> Any:
        """Read the body within its bound first; a refusal there is audited like any other."""
        try:
            body = await _read_body(request, config.max_body_bytes)
        except _Refused as exc:
            failed: _Refused = exc
            return await run(operation, call, lambda: _raise(failed))
        return await run(operation, call, lambda: handle(body))

    def _serve(operation: str, call: _Call, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        status, reason, result = 200, "ok", None
        response: Response | None = None
        try:
            result = work()
            if call.alert:
                reason = call.alert
        except _Refused as exc:
            status, reason = exc.status, exc.reason
            response = _error(exc.status, exc.reason, exc.message, exc.headers)
        except InputRejected as exc:
            status, reason = exc.status, "bad_input"
            response = _error(exc.status, "bad_input", exc.message)
        except Exception as exc:  # the model or a backend failed: never a traceback out
            if isinstance(exc, ModelIntegrityError):
                log.error("refusing %s@%s: %s", call.model, call.version, exc)
            elif isinstance(exc, GatewayError):
                log.error("%s failed: %s: %s", operation, type(exc).__name__, exc)
            else:
                log.exception("%s failed", operation)
            status, reason, message = _failure(exc)
            response = _error(status, reason, message)
        elapsed = time.perf_counter() - started
        decision = ("allow" if status < 400 else "rate_limited" if status == 429
                    else "error" if status >= 500 else "deny")
        try:
            entry = audit.AuditEntry(
                ts=datetime.now(UTC).isoformat(timespec="microseconds"),
                principal=call.principal, model=call.model, version=call.version,
                permission=call.permission or operation, decision=decision, reason=reason,
                status=status, input_digest=call.input_digest,
                output_summary=call.output_summary, latency_ms=round(elapsed * 1000, 3),
                client=call.client)
            gw.audit.write(entry, timeout=_AUDIT_WAIT)
        except Exception as exc:
            log.error("audit log write failed: %s", exc)
            if status < 400:  # an answer we cannot account for is not given
                status, response = 503, _error(503, "audit_unavailable",
                                               "the audit log is unavailable")
        # Only names of real models become metric labels: junk names cannot fill the slots.
        gw.metrics.observe(call.model if call.version != "-" else "-", status, elapsed,
                           None if status < 400 else reason)
        if response is not None:
            return response
        if isinstance(result, dict):
            return JSONResponse(result)
        return result

    def _call(request: Request, model: str = "-") -> _Call:
        client = request.client.host if request.client else "-"
        return _Call(client=client, model=model)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "service": SERVICE}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        """Readiness: the database (and Redis, when configured) answer."""
        try:
            await run_in_threadpool(_ping, gw)
        except Exception as exc:
            return _error(503, "not_ready", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"status": "ready", "service": SERVICE})

    @app.get("/metrics", tags=["operations"], responses={401: {}, 403: {}})
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (admin on '*' unless public-metrics is set)."""
        try:
            await run_in_threadpool(gw.metrics_allowed, request)
        except _Refused as exc:
            return _error(exc.status, exc.reason, exc.message, exc.headers)
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    @app.get("/v1/models", tags=["models"], responses=_ERRORS)
    async def list_models(request: Request) -> Any:
        """The models the caller holds any permission on."""
        call = _call(request)
        return await run("list", call, lambda: gw.listing(request, call))

    @app.get("/v1/models/{name}", tags=["models"], responses=_ERRORS)
    async def describe(name: str, request: Request) -> Any:
        """A model's current version, input schema and the caller's permissions."""
        call = _call(request, name)
        return await run("describe", call, lambda: gw.describe(request, name, call))

    async def _predict(name: str, version: str | None, request: Request) -> Any:
        call = _call(request, name)
        return await with_body(request, "predict", call,
                               lambda body: gw.predict(request, body, name, version, call))

    @app.post("/v1/models/{name}/predict", tags=["models"], responses=_ERRORS,
              openapi_extra=_PREDICT_BODY)
    async def predict(name: str, request: Request) -> Any:
        """Labels (``predict``) or rounded probabilities (``scores``) for a batch."""
        return await _predict(name, None, request)

    @app.post("/v1/models/{name}/versions/{version}/predict", tags=["models"],
              responses=_ERRORS, openapi_extra=_PREDICT_BODY)
    async def predict_version(name: str, version: str, request: Request) -> Any:
        """As ``predict``, pinned to one admitted version."""
        return await _predict(name, version, request)

    @app.post("/v1/models/{name}/explain", tags=["models"], openapi_extra=_PREDICT_BODY,
              responses={**_ERRORS, 501: {"description": "this model cannot explain"}})
    async def explain(name: str, request: Request) -> Any:
        """An explanation of a batch's predictions (``explain`` permission)."""
        call = _call(request, name)
        return await with_body(request, "explain", call,
                               lambda body: gw.explain(request, body, name, call))

    @app.post("/v1/models/{name}/detectors/reset", tags=["operations"],
              responses={**_ERRORS, 400: {"description": "no principal named"}})
    async def reset_detectors(name: str, request: Request, principal: str | None = None) -> Any:
        """Clear a principal's extraction flag on this model, so its requests are answered
        again (admin on the model or on ``*``)."""
        call = _call(request, name)
        return await run("detectors-reset", call,
                         lambda: gw.reset_detectors(request, name, principal, call))

    @app.get("/v1/models/{name}/download", tags=["models"], responses=_ERRORS)
    async def download(name: str, request: Request, file: str | None = None,
                       version: str | None = None) -> Any:
        """The weights (``download`` permission: white-box access), re-verified first."""
        call = _call(request, name)
        result = await run("download", call,
                           lambda: gw.download(request, name, version, file, call))
        if isinstance(result, _Download):
            return StreamingResponse(
                result.chunks(), media_type="application/octet-stream",
                headers={"Content-Length": str(result.size),
                         "Content-Disposition":
                             f'attachment; filename="{_header_safe(result.filename)}"'})
        return result

    return app


def _raise(exc: Exception) -> None:
    raise exc


def _ping(gw: Gateway) -> None:
    from sqlalchemy import text

    with gw.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    ping = getattr(gw.quotas, "ping", None)
    if ping is not None:
        ping()


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from the environment,
    as ``bastion serve`` exports them."""
    import os

    from bastion.gateway.config import load_config

    table = json.loads(os.environ.get("BASTION_GATEWAY_SETTINGS", "{}"))
    return create_app(load_config(table, environ={}))
