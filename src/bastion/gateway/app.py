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

Blocking work (database reads, the model, the audit commit) runs in one hop to the worker
lanes per request (:mod:`bastion.gateway.lanes`: a running lane takes the next request
without a wake-up, and commits a run's audit entries in one transaction); the event loop
awaits the commit before it answers. The predict routes are answered straight from ASGI
(:class:`GatewayApp`), the others through FastAPI: the same steps and answers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic_core import from_json, to_json
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

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
from bastion.gateway.lanes import Lanes, off_gil
from bastion.gateway.loaders import Predictor, load_predictor, shape_output
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.principals import BLACK_BOX, WHITE_BOX, Permission, Principal
from bastion.gateway.quotas import MemoryQuotas, QuotaSpec, RedisQuotas
from bastion.gateway.schema import InputSchema

if TYPE_CHECKING:
    from bastion.gateway.tokens import JWTAuthenticator

log = logging.getLogger("bastion.gateway")

SERVICE = "bastion-gateway"
_JSON = "application/json"
#: How long a request waits for its audit entry to commit before it is refused (503).
_AUDIT_WAIT = 30.0
_QUERY = frozenset({Permission.PREDICT, Permission.SCORES})
#: What is remembered per model or version (load failures, verified folders, quota specs).
#: Keyed by admitted names only (requests reach them after the registry lookup), so this is
#: a safety bound, rarely reached.
_MAX_KEPT = 256
#: A folder whose newest change is younger than this is hashed on every download.
_SETTLED_NS = 2_000_000_000
#: Worker threads of one gateway process (see :mod:`bastion.gateway.lanes`).
_LANES = 16


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
    """One request as the steps see it: its credentials, then what its audit entry needs
    to know, filled in as it goes."""

    client: str
    model: str = "-"
    #: The ``Authorization`` and ``X-API-Key`` headers (never logged, never audited).
    authorization: str = ""
    api_key: str = ""
    content_length: str | None = None
    started: float = field(default_factory=time.perf_counter)
    principal: str = "-"
    version: str = "-"
    permission: str = "-"
    input_digest: str = ""
    output_summary: str = ""
    #: ``alert:extraction`` / ``alert:adversarial``: the audit reason of an answered request.
    alert: str = ""

    @classmethod
    def of(cls, scope: Scope, model: str = "-") -> _Call:
        """The request of an ASGI ``scope`` (first value of each header, as Starlette)."""
        client = scope.get("client")
        call = cls(client=client[0] if client else "-", model=model)
        found = 0
        for key, value in scope["headers"]:
            if key == b"authorization" and not found & 1:
                call.authorization, found = value.decode("latin-1"), found | 1
            elif key == b"x-api-key" and not found & 2:
                call.api_key, found = value.decode("latin-1"), found | 2
            elif key == b"content-length" and not found & 4:
                call.content_length, found = value.decode("latin-1"), found | 4
        return call


@dataclass(slots=True)
class _Answer:
    """A request's outcome, settled in a worker thread: the answer to send once its audit
    entry (``audited``: its commit, or ``None`` when the log did not take it) is in."""

    status: int
    reason: str
    body: bytes
    headers: dict[str, str]
    elapsed: float
    audited: Future[int] | None
    download: _Download | None = None
    media_type: str = _JSON

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        """The raw ASGI headers of an answer with a body (not a download)."""
        return [(b"content-type", self.media_type.encode("latin-1")),
                (b"content-length", str(len(self.body)).encode()),
                *((k.lower().encode("latin-1"), v.encode("latin-1"))
                  for k, v in self.headers.items())]


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
        #: The worker threads: blocking steps (database, model) run there, one hop a
        #: request; each batch's audit entries are committed together.
        self.lanes = Lanes(_LANES, after_batch=self.audit.flush)
        self._records: dict[tuple[str, str | None], tuple[float, registry.ModelRecord]] = {}
        #: Loaded versions, least recently used first (at most ``max_loaded_models``).
        self._loaded: OrderedDict[tuple[str, str], _Loaded] = OrderedDict()
        #: Versions whose load failed: until when, and the answer to give meanwhile.
        self._failed: dict[tuple[str, str], tuple[float, _Refused]] = {}
        self._quota_specs: dict[str, QuotaSpec] = {}
        #: Model folders that passed a full check, and their stamp then (most recent last).
        self._verified: OrderedDict[tuple[str, str], registry.Stamp] = OrderedDict()
        self._load_lock = threading.Lock()  # one load at a time
        self._cache_lock = threading.Lock()  # short: reads and writes of the caches above

    # -- the steps -------------------------------------------------------------------------

    def authenticate(self, call: _Call) -> Principal:
        header = call.authorization
        token = ""
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise _Refused(401, "malformed", "use 'Authorization: Bearer <key or token>'",
                               {"WWW-Authenticate": "Bearer"})
            token = token.strip()
        else:
            token = call.api_key.strip()
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

    def caller(self, call: _Call) -> Principal:
        """The authenticated principal, named in the request's audit entry."""
        principal = self.authenticate(call)
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
        spec = self._quota_specs.get(name)
        if spec is None:  # settings do not change while the gateway runs
            q = self.config.quota_for(name)
            spec = QuotaSpec(rate=q.rate, burst=q.burst, per_day=q.per_day,
                             per_month=q.per_month)
            if len(self._quota_specs) < _MAX_KEPT:  # names reaching here are admitted
                self._quota_specs[name] = spec
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
            if len(self._failed) >= _MAX_KEPT:
                for old in [k for k, (until, _) in self._failed.items() if until <= now]:
                    del self._failed[old]
                while len(self._failed) >= _MAX_KEPT:  # the oldest failure goes first
                    del self._failed[next(iter(self._failed))]
            self._failed[key] = (now + self.config.refresh_seconds,
                                 _Refused(status, reason, message))

    # -- handlers (run in a worker thread) -------------------------------------------------

    def predict(self, body: bytes, name: str, version: str | None,
                call: _Call) -> dict[str, Any]:
        principal = self.caller(call)
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
        prediction = (off_gil(model.predictor.predict, x) if model.predictor.releases_gil
                      else model.predictor.predict(x))
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

    def reset_detectors(self, name: str, who: str | None,
                        call: _Call) -> dict[str, Any]:
        """Clear a principal's extraction flag on a model (admin on it or on ``*``)."""
        principal = self.caller(call)
        call.permission = "detectors-reset"
        if Permission.ADMIN not in self.access.permissions(principal, name):
            raise _Refused(403, "forbidden", f"admin on {name!r} is required")
        if not who or len(who) > 256:
            raise _Refused(400, "bad_request", "name the principal: ?principal=NAME")
        cleared = self.detectors.reset(name, who)
        call.output_summary = (f"extraction flag of {who} cleared" if cleared
                               else f"{who} was not flagged")
        return {"model": name, "principal": who, "cleared": cleared}

    def explain(self, body: bytes, name: str, call: _Call) -> dict[str, Any]:
        principal = self.caller(call)
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

    def describe(self, name: str, call: _Call) -> dict[str, Any]:
        principal = self.caller(call)
        rec, held = self.authorize(principal, name, None, frozenset(Permission), call)
        call.permission = "describe"
        return _describe(rec, held)

    def listing(self, call: _Call) -> dict[str, Any]:
        principal = self.caller(call)
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

    def download(self, name: str, version: str | None, file: str | None,
                 call: _Call) -> _Download:
        principal = self.caller(call)
        rec, _held = self.authorize(principal, name, version, frozenset({Permission.DOWNLOAD}),
                                    call)
        call.permission = Permission.DOWNLOAD.value
        self.consume_quota(principal, name)
        root = Path(rec.path)
        if not root.is_file():
            self._verify_folder(rec)  # every file as admitted, none added
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

    def _verify_folder(self, rec: registry.ModelRecord) -> None:
        """Refuse a model folder that differs from admission. Every file is hashed again
        only when the file system says one changed since the last check that passed (its
        stamp, taken before hashing, so a write during the check is seen next time): a
        client downloading one file of a large folder must not cost a hash of all of it."""
        key = (rec.name, rec.version)
        before = registry.stamp(rec)
        with self._cache_lock:
            if before is not None and self._verified.get(key) == before:
                self._verified.move_to_end(key)
                return
        registry.verify_content(rec)
        # A file changed within the file system's time granularity of the stamp could change
        # again without changing it (the "racy git" case): trust only settled stamps.
        if before is None or max((f[4] for f in before), default=0) > time.time_ns() - _SETTLED_NS:
            return
        with self._cache_lock:
            self._verified[key] = before
            self._verified.move_to_end(key)
            while len(self._verified) > _MAX_KEPT:
                self._verified.popitem(last=False)

    def scrape(self, call: _Call) -> _Body:
        """The Prometheus metrics (admin on ``*`` unless ``public-metrics`` is set)."""
        call.permission = "metrics"
        if not self.config.public_metrics:
            principal = self.caller(call)
            if Permission.ADMIN not in self.access.permissions(principal, "*"):
                raise _Refused(403, "forbidden", "metrics need admin on '*'")
        return _Body(self.metrics.render(), self.metrics.content_type)

    # -- one request, from its work to its audited answer ----------------------------------

    async def answer(self, operation: str, call: _Call, work: Callable[[], Any]) -> _Answer:
        """Run ``work`` in a worker thread, which also settles the answer and hands its
        audit entry to the log; then wait (here, on the event loop, holding no thread) until
        the entry is committed. An answer the log did not take is not given: 503."""
        answer = await self.lanes.run(functools.partial(self.settle, operation, call, work),
                                      (operation, call.model))
        audited = answer.audited
        try:
            if audited is None:
                raise audit.AuditUnavailable("the audit log did not take the entry")
            if not audited.done():
                async with asyncio.timeout(_AUDIT_WAIT):
                    await asyncio.wrap_future(audited)
            audited.result()
        except Exception as exc:  # TimeoutError included
            if answer.audited is not None:  # else logged when it was refused
                log.error("audit log write failed: %s", exc or type(exc).__name__)
            if answer.status < 400:  # an answer we cannot account for is not given
                if answer.download is not None:
                    answer.download.handle.close()
                answer = _Answer(503, "audit_unavailable",
                                 _error_body("audit_unavailable", "the audit log is unavailable"),
                                 {}, answer.elapsed, None)
        # Only names of real models become metric labels: junk names cannot fill the slots.
        self.metrics.observe(call.model if call.version != "-" else "-", answer.status,
                             answer.elapsed, None if answer.status < 400 else answer.reason)
        return answer

    def settle(self, operation: str, call: _Call, work: Callable[[], Any]) -> _Answer:
        """Run ``work``, map its refusal or failure to an answer (never a traceback out),
        and queue the request's audit entry (the lane commits its run's entries when the
        run ends: ``after_batch``)."""
        status, reason, headers = 200, "ok", {}
        body, download, media_type = b"", None, _JSON
        try:
            result = work()
            if isinstance(result, _Download):
                download = result
            elif isinstance(result, _Body):
                body, media_type = result.content, result.media_type
            else:
                body = _json(result)
            if call.alert:
                reason = call.alert
        except _Refused as exc:
            status, reason, headers = exc.status, exc.reason, exc.headers
            body = _error_body(exc.reason, exc.message)
        except InputRejected as exc:
            status, reason = exc.status, "bad_input"
            body = _error_body("bad_input", exc.message)
        except Exception as exc:  # the model or a backend failed
            if isinstance(exc, ModelIntegrityError):
                log.error("refusing %s@%s: %s", call.model, call.version, exc)
            elif isinstance(exc, GatewayError):
                log.error("%s failed: %s: %s", operation, type(exc).__name__, exc)
            else:
                log.exception("%s failed", operation)
            status, reason, message = _failure(exc)
            body = _error_body(reason, message)
        elapsed = time.perf_counter() - call.started
        decision = ("allow" if status < 400 else "rate_limited" if status == 429
                    else "error" if status >= 500 else "deny")
        audited: Future[int] | None = None
        try:
            audited = self.audit.enqueue(audit.AuditEntry(
                ts=datetime.now(UTC).isoformat(timespec="microseconds"),
                principal=call.principal, model=call.model, version=call.version,
                permission=call.permission or operation, decision=decision, reason=reason,
                status=status, input_digest=call.input_digest,
                output_summary=call.output_summary, latency_ms=round(elapsed * 1000, 3),
                client=call.client))
        except Exception as exc:
            log.error("audit log write failed: %s", exc)
        return _Answer(status, reason, body, headers, elapsed, audited, download, media_type)

    def close(self) -> None:
        """Finish the queued work, then commit what the audit log holds."""
        try:
            self.lanes.close()
        finally:
            self.audit.close()


@dataclass(frozen=True, slots=True)
class _Body:
    """An answer's body that is not JSON (the metrics)."""

    content: bytes
    media_type: str


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
    """The body's ``inputs``, parsed by pydantic-core's JSON parser: half the time of
    ``json.loads`` on a 784-float input (17 against 35 µs), with the same values, and a
    nesting limit of its own instead of a RecursionError. A UTF-8 byte order mark is
    skipped, as ``json.loads`` does (some clients send one)."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        payload = from_json(body)
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


#: JSON bodies as FastAPI's JSONResponse renders them (one encoder: ``json.dumps`` with
#: options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON, by pydantic-core's serializer (~2 against ~7 µs
    for a small model's answer); the standard encoder, and its errors, for what that one
    would write differently: NaN or infinity (refused: not JSON), or a value it cannot
    take."""
    try:
        out = to_json(content, inf_nan_mode="constants")
    except Exception:  # (PydanticSerializationError): the standard encoder says why
        return _ENCODER.encode(content).encode("utf-8")
    if b"NaN" in out or b"Infinity" in out:  # or a string holding the word: the same text
        return _ENCODER.encode(content).encode("utf-8")
    return out


def _error_body(reason: str, message: str) -> bytes:
    return _json({"error": {"code": reason, "message": message}})


def _error(status: int, reason: str, message: str) -> Response:
    return Response(_error_body(reason, message), status_code=status, media_type=_JSON)


def _response(answer: _Answer) -> Response:
    """The FastAPI response of an answer."""
    if answer.download is not None:
        download = answer.download
        return StreamingResponse(
            download.chunks(), media_type="application/octet-stream",
            headers={"Content-Length": str(download.size),
                     "Content-Disposition":
                         f'attachment; filename="{_header_safe(download.filename)}"'})
    return Response(answer.body, status_code=answer.status, headers=answer.headers,
                    media_type=answer.media_type)


async def _read_body(call: _Call, receive: Receive, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to be over ``limit``."""
    declared = call.content_length
    if declared is not None:
        if not declared.isdigit():
            raise _Refused(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise _Refused(413, "too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # gone mid-body: the audit log reads the answer
            raise _Refused(400, "client_disconnected", "the client left before sending the "
                           "whole body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "too_large", f"the body is over {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer_body(gw: Gateway, operation: str, call: _Call, receive: Receive,
                       handle: Callable[[bytes], Any]) -> _Answer:
    """Read the body within its bound, then answer; a refusal there is audited like any
    other."""
    try:
        body = await _read_body(call, receive, gw.config.max_body_bytes)
    except _Refused as exc:
        return await gw.answer(operation, call, functools.partial(_raise, exc))
    return await gw.answer(operation, call, functools.partial(handle, body))


#: The predict routes, answered by :class:`GatewayApp` without going through FastAPI.
_PREDICT_PATH = re.compile(r"/v1/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?"
                           r"/predict")


class GatewayApp(FastAPI):
    """The gateway's FastAPI application, whose hottest routes skip FastAPI.

    ``POST /v1/models/{name}[/versions/{version}]/predict`` is answered straight from the
    ASGI scope: the same steps, the same answers and audit entries as through the declared
    routes (which stay, for the OpenAPI document and for an app mounted under a root path),
    without FastAPI's middleware stack, routing and request objects, which cost more than
    every protection together (measured in ``benchmarks/gateway``)."""

    gateway: Gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = _PREDICT_PATH.fullmatch(scope["path"])
            if match is not None:
                await self._predict(scope, receive, send, match["name"], match["version"])
                return
        await super().__call__(scope, receive, send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str,
                       version: str | None) -> None:
        gw = self.gateway
        started = False
        try:
            call = _Call.of(scope, name)
            answer = await _answer_body(
                gw, "predict", call, receive,
                lambda body: gw.predict(body, name, version, call))
            started = True
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": answer.asgi_headers()})
            await send({"type": "http.response.body", "body": answer.body})
        except Exception:  # a bug of ours, or the client gone while we answered
            log.exception("predict failed")
            if not started:
                failed = _Answer(500, "error", _error_body("error", "internal error"), {}, 0.0,
                                 None)
                await send({"type": "http.response.start", "status": 500,
                            "headers": failed.asgi_headers()})
                await send({"type": "http.response.body", "body": failed.body})


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


def create_app(config: GatewayConfig, engine: Engine | None = None) -> GatewayApp:
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
        await run_in_threadpool(gw.close)  # flush: every answered request is logged

    app = GatewayApp(title="Bastion model gateway", version=__version__, lifespan=lifespan,
                     description="Admitted models behind authentication, per-model "
                                 "permissions, quotas and a hash-chained audit log.")
    app.gateway = gw
    app.state.gateway = gw

    async def run(operation: str, request: Request, work: Callable[[_Call], Any],
                  model: str = "-") -> Response:
        """Answer ``work(call)``: one worker-thread hop, the audit commit awaited here."""
        call = _Call.of(request.scope, model)
        return _response(await gw.answer(operation, call, functools.partial(work, call)))

    async def with_body(operation: str, request: Request, model: str,
                        handle: Callable[[bytes, _Call], Any]) -> Response:
        call = _Call.of(request.scope, model)
        return _response(await _answer_body(gw, operation, call, request.receive,
                                            lambda body: handle(body, call)))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "service": SERVICE}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        """Readiness: the database (and Redis, when configured) answer."""
        try:
            await gw.lanes.run(functools.partial(_ping, gw), "readyz")
        except Exception as exc:
            return _error(503, "not_ready", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"status": "ready", "service": SERVICE})

    @app.get("/metrics", tags=["operations"], responses={401: {}, 403: {}})
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (admin on '*' unless public-metrics is set)."""
        return await run("metrics", request, gw.scrape)

    @app.get("/v1/models", tags=["models"], responses=_ERRORS)
    async def list_models(request: Request) -> Response:
        """The models the caller holds any permission on."""
        return await run("list", request, gw.listing)

    @app.get("/v1/models/{name}", tags=["models"], responses=_ERRORS)
    async def describe(name: str, request: Request) -> Response:
        """A model's current version, input schema and the caller's permissions."""
        return await run("describe", request, lambda call: gw.describe(name, call), name)

    @app.post("/v1/models/{name}/predict", tags=["models"], responses=_ERRORS,
              openapi_extra=_PREDICT_BODY)
    async def predict(name: str, request: Request) -> Response:
        """Labels (``predict``) or rounded probabilities (``scores``) for a batch."""
        return await with_body("predict", request, name,
                               lambda body, call: gw.predict(body, name, None, call))

    @app.post("/v1/models/{name}/versions/{version}/predict", tags=["models"],
              responses=_ERRORS, openapi_extra=_PREDICT_BODY)
    async def predict_version(name: str, version: str, request: Request) -> Response:
        """As ``predict``, pinned to one admitted version."""
        return await with_body("predict", request, name,
                               lambda body, call: gw.predict(body, name, version, call))

    @app.post("/v1/models/{name}/explain", tags=["models"], openapi_extra=_PREDICT_BODY,
              responses={**_ERRORS, 501: {"description": "this model cannot explain"}})
    async def explain(name: str, request: Request) -> Response:
        """An explanation of a batch's predictions (``explain`` permission)."""
        return await with_body("explain", request, name,
                               lambda body, call: gw.explain(body, name, call))

    @app.post("/v1/models/{name}/detectors/reset", tags=["operations"],
              responses={**_ERRORS, 400: {"description": "no principal named"}})
    async def reset_detectors(name: str, request: Request,
                              principal: str | None = None) -> Response:
        """Clear a principal's extraction flag on this model, so its requests are answered
        again (admin on the model or on ``*``)."""
        return await run("detectors-reset", request,
                         lambda call: gw.reset_detectors(name, principal, call), name)

    @app.get("/v1/models/{name}/download", tags=["models"], responses=_ERRORS)
    async def download(name: str, request: Request, file: str | None = None,
                       version: str | None = None) -> Response:
        """The weights (``download`` permission: white-box access), re-verified first."""
        return await run("download", request,
                         lambda call: gw.download(name, version, file, call), name)

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
