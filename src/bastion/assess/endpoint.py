"""A live gateway endpoint as the model under assessment: black-box, every query over HTTP.

``bastion assess --endpoint URL --api-key K --model NAME`` attacks a model served by
``bastion serve`` the way an outside attacker would: through ``POST /v1/models/NAME/predict``,
with the principal's own key, within its quota, seeing what its permission shows — labels
only (``predict``) or rounded probabilities, possibly only the top k (``scores``). Every
answered input is counted; the report states how many the assessment spent and, when the
gateway's detectors refused it (``403 blocked_extraction``/``blocked_adversarial``), after
how many answered queries.

The client is the standard library's (``urllib``), bounded everywhere: a timeout per request,
answers read up to :data:`MAX_RESPONSE` bytes, batches cut to the model's ``max_batch`` and
body limit, waits on ``429 Retry-After`` only up to ``max_wait`` seconds in all, no redirects
(the key is never sent anywhere else), and plain ``http://`` only to a loopback address (the
key must not cross a network in clear text).
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bastion.assess.data import Dataset, EvalData
from bastion.assess.targets import EndpointTarget, QueriesRefused
from bastion.errors import InputError, UsageError
from bastion.findings import clip

#: The largest answer read from the gateway (a batch of scores is far smaller).
MAX_RESPONSE = 16 << 20
#: The request body limit assumed when the model's schema declares none (the gateway's default).
DEFAULT_BODY_LIMIT = 1 << 20
#: Refusals that hold for every later query (the principal is flagged until an admin clears it).
PERSISTENT = frozenset({"blocked_extraction"})


@dataclass(frozen=True, slots=True)
class EndpointModel:
    """What ``GET /v1/models/NAME`` says about the model, as the assessment needs it."""

    name: str
    version: str
    shape: tuple[int | None, ...]  # per input, without the batch dimension
    low: float | None
    high: float | None
    max_batch: int
    max_body_bytes: int
    permissions: frozenset[str]

    @property
    def labels_only(self) -> bool:
        return "scores" not in self.permissions


def _base_url(url: str) -> str:
    """The gateway's base URL, checked: http(s), a host, no credentials; http only to a
    loopback address."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--endpoint: expected an http(s) URL of the gateway, not "
                         f"{clip(url, 80)!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError("--endpoint: the URL must not hold credentials, a query or a fragment; "
                         "give the key with --api-key")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise UsageError(f"--endpoint: plain http to {parts.hostname} would send the API key in "
                         "clear text; use https (http is accepted for loopback addresses only)")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None  # a redirect is answered as the error it is; the key goes nowhere else


class EndpointClient:
    """``POST /v1/models/NAME/predict`` for batches of inputs; callable as a target's ``send``.

    Counts ``answered`` inputs (the gateway gave an answer) and ``refused`` ones (a detector
    refused them); ``waited`` is the time spent honouring ``Retry-After``."""

    def __init__(self, url: str, api_key: str, model: str, *, timeout: float = 30.0,
                 max_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key or any(c in api_key for c in "\r\n\0"):
            raise UsageError("--api-key: a gateway key (bst_...) or bearer token is required")
        self.base = _base_url(url)
        self.model = model
        self._key = api_key  # never logged, never in a message or the report
        self.timeout = timeout
        self.max_wait = max_wait
        self._sleep = sleep
        handlers: list[Any] = [_NoRedirect()]
        host = urllib.parse.urlsplit(self.base).hostname or ""
        if _loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))  # loopback never via a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self.answered = 0
        self.refused = 0
        self.requests = 0
        self.waited = 0.0
        self.blocked: QueriesRefused | None = None
        self.info: EndpointModel | None = None
        self.classes: list[Any] | None = None
        #: Classes the evaluation data has (top-k rows are widened to at least this many).
        self.n_classes = 0

    def __repr__(self) -> str:
        return f"EndpointClient({self.base!r}, model={self.model!r}, answered={self.answered})"

    @property
    def _model_path(self) -> str:
        return f"{self.base}/v1/models/{urllib.parse.quote(self.model, safe='')}"

    # -- HTTP ------------------------------------------------------------------------------------

    def _request(self, method: str, url: str, body: bytes | None = None) -> tuple[
            int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "application/json",
                   "User-Agent": "bastion-assess"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in _base_url
            url, data=body, headers=headers, method=method)
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers.items()), _read(response)
        except urllib.error.HTTPError as exc:
            try:
                payload = _read(exc)
            except OSError:
                payload = b""
            return exc.code, dict(exc.headers.items()) if exc.headers else {}, payload
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InputError(f"{self.base}: cannot reach the gateway: {clip(str(reason), 200)}",
                             hint="check --endpoint and that `bastion serve` is running") \
                from None

    def describe(self) -> EndpointModel:
        """The model's input schema and the caller's permissions on it."""
        status, _headers, body = self._request("GET", self._model_path)
        data = self._json(status, body)
        schema = data.get("input_schema")
        permissions = data.get("permissions")
        if not isinstance(schema, dict) or not isinstance(permissions, list):
            raise InputError(f"{self._model_path}: not a Bastion gateway model description")
        shape = schema.get("shape")
        if (not isinstance(shape, list) or not shape
                or not all(d is None or (isinstance(d, int) and d > 0) for d in shape)):
            raise InputError(f"{self._model_path}: the model's input shape {shape!r} is invalid")
        if not {"predict", "scores"} & set(permissions):
            raise InputError(f"{self.model}: the key holds {', '.join(permissions) or 'no'} "
                             "permission(s); assessing an endpoint needs predict or scores")
        body_limit = schema.get("max_body_bytes") or DEFAULT_BODY_LIMIT
        self.info = EndpointModel(
            name=str(data.get("name", self.model)), version=str(data.get("version", "?")),
            shape=tuple(shape[1:]), low=_number(schema.get("min")),
            high=_number(schema.get("max")), max_batch=max(1, int(schema.get("max_batch", 64))),
            max_body_bytes=int(body_limit), permissions=frozenset(map(str, permissions)))
        return self.info

    def _json(self, status: int, body: bytes) -> dict[str, Any]:
        """The answer of a successful request; any other status is one clear error."""
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if status == 200 and isinstance(data, dict):
            return data
        error = data.get("error") if isinstance(data, dict) else None
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        hints = {401: "check --api-key", 404: "no such model, or the key has no permission on "
                 "it", 413: "the data's samples are larger than the model accepts",
                 422: "the data does not fit the model's input schema"}
        raise InputError(f"{self.model}: the gateway answered {status}"
                         f"{' ' + code if code else ''}"
                         f"{': ' + clip(message, 300) if message else ''}",
                         hint=hints.get(status))

    # -- queries ---------------------------------------------------------------------------------

    def __call__(self, x: NDArray[np.float32]) -> NDArray[Any]:
        """The gateway's answers for a batch: labels (n,) or class scores (n, classes)."""
        info = self.info or self.describe()
        if self.blocked is not None:
            raise self.blocked.again(self.answered)
        parts: list[NDArray[Any]] = []
        step = info.max_batch
        start = 0
        while start < len(x):
            chunk = x[start:start + step]
            body = _encode(chunk)
            if len(body) > info.max_body_bytes and len(chunk) > 1:
                step = max(1, len(chunk) // 2)
                continue
            parts.append(self._predict(chunk, body))
            start += len(chunk)
        if not parts:
            return np.zeros((0,), dtype=np.int64)
        widths = {p.shape[1] if p.ndim == 2 else 0 for p in parts}
        if len(widths) > 1:  # labels and scores mixed: the permission changed mid-run
            parts = [p.argmax(1) if p.ndim == 2 else p for p in parts]
        return np.concatenate(parts)

    def _predict(self, chunk: NDArray[np.float32], body: bytes) -> NDArray[Any]:
        url = f"{self._model_path}/predict"
        while True:
            status, headers, payload = self._request("POST", url, body)
            if status != 429:
                break
            delay = _retry_after(headers)
            if self.waited + delay > self.max_wait:
                raise QueriesRefused("rate_limited", f"the principal's quota is spent (retry "
                                     f"after {delay:g} s, over the {self.max_wait:g} s the "
                                     "assessment waits)", self.answered)
            self._sleep(delay)
            self.waited += delay
        if status == 403:
            code = _error_code(payload)
            if code.startswith("blocked_"):
                self.refused += len(chunk)
                refusal = QueriesRefused(code, _error_message(payload), self.answered)
                if code in PERSISTENT:
                    self.blocked = refusal
                raise refusal
        data = self._json(status, payload)
        answer = self._parse(data, len(chunk))
        self.answered += len(chunk)
        return answer

    def _parse(self, data: dict[str, Any], n: int) -> NDArray[Any]:
        labels = data.get("labels")
        if not isinstance(labels, list) or len(labels) != n:
            raise InputError(f"{self.model}: the gateway answered "
                             f"{len(labels) if isinstance(labels, list) else 'no'} labels "
                             f"for {n} inputs")
        if "scores" in data and isinstance(data.get("classes"), list):
            classes = data["classes"]
            self.classes = classes
            scores = np.asarray(data["scores"], dtype=np.float64)
            if scores.shape != (n, len(classes)):
                raise InputError(f"{self.model}: scores of shape {scores.shape} for {n} inputs "
                                 f"of {len(classes)} classes")
            return _by_index(scores, classes, self.model)
        if "top_k" in data and isinstance(data["top_k"], list):
            return self._top_k(data["top_k"], n)
        return np.asarray([_class_index(v, self.classes, self.model) for v in labels],
                          dtype=np.int64)

    def _top_k(self, rows: list[Any], n: int) -> NDArray[Any]:
        """Top-k answers as full score rows: the mass not shown spread over the other
        classes (the attacker's best guess). Class columns are indices."""
        entries: list[list[tuple[int, float]]] = []
        width = 0
        for row in rows[:n]:
            pairs = [(_class_index(e.get("label"), self.classes, self.model),
                      float(e.get("score", 0.0))) for e in row if isinstance(e, dict)]
            entries.append(pairs)
            width = max([width, *(i + 1 for i, _ in pairs)])
        width = max(width, len(self.classes or ()), self.n_classes)
        out = np.zeros((n, width))
        for i, pairs in enumerate(entries):
            rest = max(0.0, 1.0 - sum(s for _, s in pairs))
            others = width - len(pairs)
            if others:
                out[i] = rest / others
            for index, score in pairs:
                out[i, index] = score
        return out


def _by_index(scores: NDArray[Any], classes: list[Any], model: str) -> NDArray[Any]:
    """Score columns placed at their class index (integer class labels), or kept in the
    gateway's order when the classes are names (the data's labels are then their positions)."""
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        if min(classes) < 0 or max(classes) > 10_000:
            raise InputError(f"{model}: class labels {min(classes)}..{max(classes)} are not "
                             "class indices")
        out = np.zeros((len(scores), max(classes) + 1))
        out[:, classes] = scores
        return out
    return scores


def _class_index(value: Any, classes: list[Any] | None, model: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000:
        return value
    if isinstance(value, float) and value.is_integer() and 0 <= value <= 10_000:
        return int(value)
    if classes is not None and value in classes:
        return classes.index(value)
    raise InputError(f"{model}: the gateway answers labels such as {clip(repr(value), 40)}, "
                     "not class indices; the evaluation data's labels must be the model's "
                     "class indices")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _encode(chunk: NDArray[np.float32]) -> bytes:
    """The request body; float32 values written exactly (the gateway reads them back to the
    same float32, so a crafted perturbation arrives intact)."""
    return json.dumps({"inputs": chunk.astype(np.float64).tolist()},
                      separators=(",", ":")).encode()


def _read(response: Any) -> bytes:
    declared = response.headers.get("Content-Length") if response.headers else None
    if declared is not None and declared.isdigit() and int(declared) > MAX_RESPONSE:
        raise InputError(f"the gateway's answer is {declared} bytes, over {MAX_RESPONSE}")
    data: bytes = response.read(MAX_RESPONSE + 1)
    if len(data) > MAX_RESPONSE:
        raise InputError(f"the gateway's answer is over {MAX_RESPONSE} bytes")
    return data


def _retry_after(headers: dict[str, str]) -> float:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "1")
    try:
        return min(max(float(value), 0.0), 86_400.0)
    except ValueError:
        return 1.0


def _error(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(payload: bytes) -> str:
    return clip(str(_error(payload).get("code", "")), 60)


def _error_message(payload: bytes) -> str:
    return clip(str(_error(payload).get("message", "")), 300)


# -- the target ----------------------------------------------------------------------------------


def endpoint_target(url: str, api_key: str, model: str, holdout: Dataset,
                    members: Dataset | None = None, *, budget: int | None = None,
                    max_wait: float = 60.0, timeout: float = 30.0,
                    client: EndpointClient | None = None) -> tuple[EndpointTarget, EvalData]:
    """The endpoint as a target and the evaluation data fitted to it: the model's declared
    value range becomes the attacks' range, and one probe query learns what it answers."""
    client = client or EndpointClient(url, api_key, model, timeout=timeout, max_wait=max_wait)
    info = client.describe()
    shape = holdout.input_shape
    if len(info.shape) != len(shape) or any(d is not None and d != s
                                            for d, s in zip(info.shape, shape, strict=True)):
        declared = "(" + ", ".join("any" if d is None else str(d) for d in info.shape) + ")"
        raise InputError(f"{model}: the model takes inputs of shape {declared}; the data's "
                         f"samples have shape {shape}")
    clip_values = None
    if info.low is not None and info.high is not None and info.high > info.low:
        clip_values = (info.low, info.high)
        for part in filter(None, (holdout, members)):
            if float(part.x.min()) < info.low or float(part.x.max()) > info.high:
                raise InputError(f"{part.source}: values from {float(part.x.min()):g} to "
                                 f"{float(part.x.max()):g}, outside the model's declared "
                                 f"range [{info.low:g}, {info.high:g}]")
    data = EvalData.of(holdout, members, clip_values=clip_values,
                       name=f"{holdout.source} via {info.name}")
    target = EndpointTarget(f"{client.base}/v1/models/{info.name}", api_key, data.input_shape,
                            data.n_classes, data.clip_values, send=client,
                            labels_only=info.labels_only, budget=budget)
    target.client = client
    client.n_classes = data.n_classes
    probe = np.asarray(client(holdout.x[:1]))  # answered and counted by the client
    width = int(probe.shape[1]) if probe.ndim == 2 else int(probe.max()) + 1
    if width > data.n_classes:
        data = _wider(data, width)
        target.n_classes = client.n_classes = width
    return target, data


def _wider(data: EvalData, n_classes: int) -> EvalData:
    """The same data with more classes (the model knows classes the data lacks)."""
    return EvalData(data.holdout, data.members, data.clip_values, n_classes, data.name)
