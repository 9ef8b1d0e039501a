"""``bastion probe URL...``: what an ML endpoint gives away to a client without credentials.

For each URL the prober identifies the server (TorchServe inference/management/metrics,
Triton, KServe or another Open Inference Protocol server, MLflow, the Ray dashboard, Jupyter,
Bastion's gateway, a bare Prometheus endpoint) and then asks the questions that matter for
it: does the management or code-running API answer without credentials, or with an obviously
invalid token; can models be listed, their metadata read, their artifacts downloaded; do the
metrics name the models.

It is built to be pointed at production by its owner:

- read-only: GET, HEAD and OPTIONS only (enforced in :mod:`bastion.exposure._http`); nothing
  that registers, loads, submits, starts or writes is ever sent;
- only the origins named: every request goes to the URL's scheme, host and port, and a
  redirect elsewhere is reported, not followed;
- bounded: a timeout per request, a deadline per target, a cap on requests and response
  bytes, and a bound on targets probed at once. A target that stalls is abandoned at its
  deadline; the report still says what happened to it.

Every target ends with a result: ``PROBE-IDENTIFIED`` (or ``PROBE-UNKNOWN-SERVER``) and the
findings, or an error finding (unreachable, timeout, TLS error, not HTTP).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bastion import __version__
from bastion.errors import UsageError
from bastion.exposure import rules
from bastion.exposure._http import Client, Origin, ProbeError, Response
from bastion.findings import Finding, Location, Report, ScanStats, Severity
from bastion.policy import DEFAULT, Policy, apply_policy
from bastion.rules import Rule


@dataclass(frozen=True)
class ProbeOptions:
    timeout: float = 5.0  # seconds per request
    deadline: float = 30.0  # seconds per target, all requests together
    concurrency: int = 8  # targets probed at once
    max_body: int = 256 << 10  # bytes kept from one response
    verify_tls: bool = True
    max_requests: int = 40  # per target


#: Extra seconds the coordinator waits past a target's deadline before abandoning it.
_GRACE = 1.0
_ERRORS: dict[str, Rule] = {
    "unreachable": rules.PROBE_UNREACHABLE, "timeout": rules.PROBE_TIMEOUT,
    "tls": rules.PROBE_TLS_ERROR, "not-http": rules.PROBE_NOT_HTTP,
}


def probe_targets(urls: Sequence[str], options: ProbeOptions = ProbeOptions(),
                  policy: Policy = DEFAULT, *, policy_source: str = "") -> Report:
    """Probe every URL and return one report (policy applied, findings sorted)."""
    if not urls:
        raise UsageError("nothing to probe", hint="give one or more http:// or https:// URLs")
    origins: list[Origin] = []
    for url in urls:
        try:
            origins.append(Origin.parse(url))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if options.timeout <= 0 or options.deadline <= 0 or options.concurrency < 1:
        raise UsageError("--timeout and --deadline must be positive, --concurrency at least 1")
    started = datetime.now(UTC)
    clock = time.monotonic()
    results = _run_all(origins, options)
    findings = [f for result in results for f in result.findings]
    findings = apply_policy(findings, policy, source=policy_source)
    findings.sort(key=lambda f: (-f.severity.rank, f.location.path, f.rule_id, f.message))
    answered = sum(1 for r in results if r.answered)
    return Report(
        tool_version=__version__, started=started, roots=tuple(o.url() for o in origins),
        fail_on=policy.fail_on, findings=tuple(findings),
        stats=ScanStats(files=len(origins), bytes=sum(r.bytes_read for r in results),
                        analyzed=answered, seconds=round(time.monotonic() - clock, 3)),
        notes=(f"probed {len(origins)} target(s) with read-only requests "
               f"(timeout {options.timeout:g}s per request, {options.deadline:g}s per target)",),
    )


@dataclass
class _Result:
    findings: list[Finding] = field(default_factory=list)
    answered: bool = False
    bytes_read: int = 0


def _run_all(origins: list[Origin], options: ProbeOptions) -> list[_Result]:
    """Run targets on daemon threads, at most ``concurrency`` at once. A target still running
    at its deadline (plus a grace second) is abandoned and reported as a timeout: its thread
    may be stuck in a resolver call no timeout reaches, and must not hold up the report."""
    results: dict[int, _Result] = {}
    lock = threading.Lock()
    done = threading.Condition(lock)
    running: dict[int, float] = {}  # index -> when it started
    pending = list(range(len(origins)))

    def work(index: int) -> None:
        result = _probe_one(origins[index], options)
        with done:
            if index not in results:
                results[index] = result
            running.pop(index, None)
            done.notify_all()

    with done:
        while len(results) < len(origins):
            while pending and len(running) < options.concurrency:
                index = pending.pop(0)
                running[index] = time.monotonic()
                threading.Thread(target=work, args=(index,), daemon=True,
                                 name=f"bastion-probe-{index}").start()
            now = time.monotonic()
            for index, since in list(running.items()):
                if now - since > options.deadline + _GRACE:
                    origin = origins[index]
                    results[index] = _Result([rules.PROBE_TIMEOUT.finding(
                        Location(origin.url()),
                        f"{origin.url()}: no result within the {options.deadline:g}s deadline; "
                        "abandoned")])
                    running.pop(index)
            if len(results) < len(origins):
                done.wait(timeout=0.1)
    return [results[i] for i in range(len(origins))]


def _probe_one(origin: Origin, options: ProbeOptions) -> _Result:
    client = Client(origin, timeout=options.timeout,
                    deadline=time.monotonic() + options.deadline, max_body=options.max_body,
                    verify_tls=options.verify_tls, user_agent=f"bastion-probe/{__version__}",
                    max_requests=options.max_requests)
    session = _Session(client)
    try:
        session.run()
    except ProbeError as exc:
        session.error(exc)
    except Exception as exc:  # a bug must not cost the other targets their report
        session.add(rules.PROBE_NOT_HTTP, "", f"probe failed: {type(exc).__name__}: {exc}")
    return _Result(session.findings, session.answered, client.bytes_read)


# -- one target ---------------------------------------------------------------------------------

_INVALID_TOKEN = "bastion-probe-invalid-" + secrets.token_hex(8)
_MODEL_LABEL = re.compile(r'\b(?:model|model_name|modelName|model_id)="([^"]{1,200})"')


@dataclass(frozen=True)
class Identity:
    """What a target turned out to be."""

    kind: str
    version: str = ""
    detail: str = ""


class _Session:
    """The requests and findings of one target."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.origin = client.origin
        self.findings: list[Finding] = []
        self.answered = False
        self._offsite_reported = False

    # helpers ---------------------------------------------------------------------------------

    def add(self, rule: Rule, path: str, message: str, *, evidence: str | None = None,
            severity: Severity | None = None, **properties: Any) -> None:
        self.findings.append(rule.finding(
            Location(self.origin.url(path)), message, evidence=evidence, severity=severity,
            properties={"target": self.origin.url(), **properties}))

    def get(self, path: str, headers: dict[str, str] | None = None, *,
            method: str = "GET") -> Response:
        response = self.client.get(path, headers, method=method)
        self.answered = True
        if response.offsite and not self._offsite_reported:
            self._offsite_reported = True
            self.add(rules.PROBE_REDIRECT_OFFSITE, path,
                     f"redirects to {response.offsite}, another origin: not followed",
                     evidence=f"{response.status} Location: {response.offsite}")
        return response

    def error(self, exc: ProbeError) -> None:
        rule = _ERRORS.get(exc.kind, rules.PROBE_NOT_HTTP)
        self.add(rule, "", f"{self.origin.url()}: {exc.message}", error=exc.kind)

    def denied(self, response: Response) -> bool:
        return response.status in (401, 403) or (
            response.status == 400 and "token" in response.text.lower()
            and "authoriz" in response.text.lower())

    def invalid_token_check(self, path: str, scheme: str = "Bearer") -> None:
        """An endpoint that refused a bare request must refuse an obviously invalid token."""
        if scheme == "Basic":
            import base64

            value = "Basic " + base64.b64encode(
                f"bastion-probe:{_INVALID_TOKEN}".encode()).decode()
        else:
            value = f"{scheme} {_INVALID_TOKEN}"
        response = self.get(path, {"Authorization": value})
        if response.ok:
            self.add(rules.PROBE_INVALID_TOKEN_ACCEPTED, path,
                     f"refused without credentials but answered {response.status} with the "
                     f"invalid {scheme} credential {_INVALID_TOKEN!r}",
                     evidence=f"GET {path} -> {response.status}")

    # flow ------------------------------------------------------------------------------------

    def run(self) -> None:
        for identify, check in _KINDS:
            identity = identify(self)
            if identity is not None:
                label = identity.kind + (f" {identity.version}" if identity.version else "")
                self.add(rules.PROBE_IDENTIFIED, "", f"{self.origin.url()}: {label}"
                         + (f" ({identity.detail})" if identity.detail else ""),
                         kind=identity.kind, version=identity.version)
                check(self, identity)
                return
        root = self.get("/")
        server = root.header("server")
        self.add(rules.PROBE_UNKNOWN, "", f"{self.origin.url()}: answered HTTP {root.status} "
                 "but is not a known ML server",
                 evidence=f"Server: {server}" if server else f"HTTP {root.status}")


# -- identification -----------------------------------------------------------------------------

def _json_object(response: Response) -> dict[str, Any] | None:
    data = response.json() if response.ok else None
    return data if isinstance(data, dict) else None


def _is_gateway(s: _Session) -> Identity | None:
    data = _json_object(s.get("/healthz"))
    if data is not None and data.get("service") == "bastion-gateway":
        return Identity("Bastion gateway", str(data.get("version", "")))
    return None


def _is_jupyter(s: _Session) -> Identity | None:
    response = s.get("/api")
    data = _json_object(response)
    if data is not None and set(data) == {"version"} and isinstance(data["version"], str):
        return Identity("Jupyter Server", data["version"])
    return None


def _is_ray(s: _Session) -> Identity | None:
    response = s.get("/api/version")
    data = _json_object(response)
    if data is not None and "ray_version" in data:
        return Identity("Ray dashboard", str(data.get("ray_version", "")))
    text = response.text.lower()
    if s.denied(response) and ("ray" in text or (
            "authentication token" in text and "aiohttp" in response.header("server").lower())):
        return Identity("Ray dashboard", detail="token authentication on")
    return None


def _is_mlflow(s: _Session) -> Identity | None:
    response = s.get("/version")
    if 'realm="mlflow"' in response.header("www-authenticate").lower():
        return Identity("MLflow tracking server", detail="basic-auth on")
    text = response.text.strip()
    if response.ok and re.fullmatch(r"\d+\.\d+\.\d+\S{0,20}", text) and \
            s.get("/health").text.strip() == "OK":
        return Identity("MLflow tracking server", text)
    return None


def _is_triton_or_oip(s: _Session) -> Identity | None:
    response = s.get("/v2")
    data = _json_object(response)
    if data is not None and "name" in data and "extensions" in data:
        name = str(data["name"])
        if name == "triton":
            return Identity("Triton Inference Server", str(data.get("version", "")))
        return Identity("Open Inference Protocol (KServe v2) server",
                        str(data.get("version", "")), detail=name)
    if s.denied(response) and "triton" in response.text.lower():
        return Identity("Triton Inference Server", detail="v2 metadata restricted")
    return None


def _is_kserve_v1(s: _Session) -> Identity | None:
    data = _json_object(s.get("/v1/models"))
    if data is not None and isinstance(data.get("models"), list) and all(
            isinstance(m, str) for m in data["models"]):
        return Identity("KServe model server (v1 protocol)")
    return None


_TORCHSERVE_404 = "please refer to api document"


def _is_torchserve(s: _Session) -> Identity | None:
    ping = s.get("/ping")
    data = _json_object(ping)
    if data is not None and set(data) == {"status"} and "health" in str(data["status"]).lower():
        return Identity("TorchServe", detail="inference API")
    models = s.get("/models")
    listing = _json_object(models)
    if listing is not None and isinstance(listing.get("models"), list):
        return Identity("TorchServe", detail="management API")
    if _TORCHSERVE_404 in models.text.lower() or _TORCHSERVE_404 in ping.text.lower() or (
            s.denied(models) and "token authorization" in models.text.lower()):
        kind = "management API" if models.status != 404 else "API"
        return Identity("TorchServe", detail=kind)
    return None


def _is_metrics(s: _Session) -> Identity | None:
    response = s.get("/metrics")
    text = response.text
    if not response.ok or "# TYPE" not in text:
        return None
    family = ("Triton" if "nv_inference" in text else "TorchServe" if "ts_inference" in text
              or "ts_queue_latency" in text else "Ray" if "ray_" in text else "Prometheus")
    return Identity(f"{family} metrics endpoint")


# -- checks per kind ----------------------------------------------------------------------------

def _check_gateway(s: _Session, identity: Identity) -> None:
    response = s.get("/v1/models")
    if response.ok:
        names = _names(response.json())
        s.add(rules.PROBE_OPEN_MODEL_LISTING, "/v1/models",
              "the gateway lists models without credentials"
              + (f": {', '.join(names[:10])}" if names else ""),
              evidence=f"GET /v1/models -> {response.status}")
        s.add(rules.PROBE_OPEN_INFERENCE, "/v1/models",
              "the gateway's model API answers without credentials",
              evidence=f"GET /v1/models -> {response.status}")
    elif s.denied(response):
        s.invalid_token_check("/v1/models")
    _check_metrics_path(s)


def _check_jupyter(s: _Session, identity: Identity) -> None:
    kernels = s.get("/api/kernels")
    contents = s.get("/api/contents")
    if kernels.ok and isinstance(kernels.json(), list):
        s.add(rules.PROBE_OPEN_MANAGEMENT, "/api/kernels",
              "Jupyter's kernels API answers without a token: anyone can start a kernel and "
              "run code", evidence=f"GET /api/kernels -> {kernels.status}")
    elif s.denied(kernels):
        s.invalid_token_check("/api/kernels", scheme="token")
    data = contents.json() if contents.ok else None
    if isinstance(data, dict) and "content" in data:
        listed = [str(item.get("name")) for item in data.get("content") or []
                  if isinstance(item, dict)][:10]
        s.add(rules.PROBE_OPEN_MANAGEMENT, "/api/contents",
              "Jupyter's contents API reads and lists files without a token"
              + (f": {', '.join(listed)}" if listed else ""),
              evidence=f"GET /api/contents -> {contents.status}")


def _check_mlflow(s: _Session, identity: Identity) -> None:
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    response = s.get(search)
    if response.ok and isinstance(response.json(), dict):
        experiments = _names((response.json() or {}).get("experiments"), key="name")
        s.add(rules.PROBE_OPEN_MANAGEMENT, "/api/2.0/mlflow/experiments/search",
              "the MLflow REST API answers without credentials (the same API creates runs and "
              "registers model versions)"
              + (f"; experiments: {', '.join(experiments)}" if experiments else ""),
              evidence=f"GET {search} -> {response.status}")
    elif s.denied(response):
        s.invalid_token_check(search, scheme="Basic")
        return
    models = s.get("/api/2.0/mlflow/registered-models/search?max_results=100")
    data = models.json() if models.ok else None
    if isinstance(data, dict):
        names = _names(data.get("registered_models"), key="name")
        if names:
            s.add(rules.PROBE_OPEN_MODEL_LISTING, "/api/2.0/mlflow/registered-models/search",
                  f"the model registry lists {len(names)} model(s) without credentials: "
                  + ", ".join(names[:10]), evidence=f"GET ... -> {models.status}")
    _check_mlflow_artifacts(s)


def _check_mlflow_artifacts(s: _Session) -> None:
    """List the artifact proxy breadth-first (a few listings, a few levels) until a file turns
    up, then fetch its headers: proof that a model file can be downloaded."""
    base = "/api/2.0/mlflow-artifacts/artifacts"
    listing = s.get(base)
    data = listing.json() if listing.ok else None
    if not isinstance(data, dict):
        return
    files, queue = _artifact_entries(data)
    listings = 0
    while not files and queue and listings < _MAX_LISTINGS:
        directory = queue.pop(0)
        listings += 1
        sub = s.get(f"{base}?path={quote(directory)}")
        more = sub.json() if sub.ok else None
        if isinstance(more, dict):
            found, deeper = _artifact_entries(more, directory)
            files += found
            queue += [d for d in deeper if d.count("/") < _MAX_ARTIFACT_DEPTH]
    if files:
        path = files[0]
        head = s.get(f"{base}/{quote(path)}", method="HEAD")
        fetched = head if head.ok else s.get(f"{base}/{quote(path)}")
        if fetched.ok:
            s.add(rules.PROBE_MODEL_DOWNLOAD, f"{base}/{path}",
                  f"artifacts can be listed and downloaded without credentials, e.g. {path}",
                  evidence=f"{'HEAD' if head.ok else 'GET'} {base}/{path} -> {fetched.status}")
            return
    empty = not files and not data.get("files")
    s.add(rules.PROBE_MODEL_DOWNLOAD, base,
          "the artifact proxy answers listings without credentials"
          + (" (no artifacts stored yet)" if empty else ""),
          evidence=f"GET {base} -> {listing.status}", severity=Severity.HIGH)


_MAX_LISTINGS = 12
_MAX_ARTIFACT_DEPTH = 6


def _artifact_entries(data: dict[str, Any], prefix: str = "") -> tuple[list[str], list[str]]:
    files: list[str] = []
    directories: list[str] = []
    for item in data.get("files") or []:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            continue
        path = f"{prefix}/{item['path']}" if prefix else item["path"]
        (directories if item.get("is_dir") else files).append(path)
    return files, directories


def _check_ray(s: _Session, identity: Identity) -> None:
    response = s.get("/api/jobs/")
    if response.ok and isinstance(response.json(), list | dict):
        s.add(rules.PROBE_OPEN_MANAGEMENT, "/api/jobs/",
              "Ray's Jobs API answers without a token: anyone can submit a job, i.e. run "
              "commands on the cluster (ShadowRay)", evidence=f"GET /api/jobs/ -> "
              f"{response.status}")
    elif s.denied(response):
        s.invalid_token_check("/api/jobs/")


def _check_torchserve(s: _Session, identity: Identity) -> None:
    models = s.get("/models")
    data = _json_object(models)
    if data is not None and isinstance(data.get("models"), list):
        names = _names(data["models"], key="modelName")
        s.add(rules.PROBE_OPEN_MANAGEMENT, "/models",
              "TorchServe's management API answers without a token (the same API registers "
              "models from URLs: ShellTorch)", evidence=f"GET /models -> {models.status}")
        if names:
            s.add(rules.PROBE_OPEN_MODEL_LISTING, "/models",
                  f"TorchServe lists its models: {', '.join(names[:10])}",
                  evidence=f"GET /models -> {models.status}")
    elif s.denied(models):
        s.invalid_token_check("/models")
    description = s.get("/api-description")
    if description.ok and "inference" in description.text.lower():
        s.add(rules.PROBE_OPEN_INFERENCE, "/api-description",
              "TorchServe's inference API answers without a token",
              evidence=f"GET /api-description -> {description.status}")
    elif s.denied(description):
        s.invalid_token_check("/api-description")
    _check_metrics_path(s)


def _check_oip(s: _Session, identity: Identity) -> None:
    names: list[str] = []
    if identity.kind.startswith("Triton"):
        stats = s.get("/v2/models/stats")
        data = _json_object(stats)
        if data is not None:
            names = _names(data.get("model_stats"), key="name")
            s.add(rules.PROBE_OPEN_MODEL_LISTING, "/v2/models/stats",
                  "Triton's statistics API answers without credentials"
                  + (f" and names the models: {', '.join(sorted(set(names))[:10])}"
                     if names else ""), evidence=f"GET /v2/models/stats -> {stats.status}")
        for path in ("/v2/logging", "/v2/trace/setting"):
            response = s.get(path)
            if response.ok and isinstance(response.json(), dict):
                s.add(rules.PROBE_OPEN_MANAGEMENT, path,
                      f"Triton's {path.split('/')[2]} settings API answers without "
                      "credentials (its POST changes log files and tracing: CVE-2024-0087)",
                      evidence=f"GET {path} -> {response.status}")
    v1 = _json_object(s.get("/v1/models"))
    if v1 is not None and isinstance(v1.get("models"), list):
        names += [str(m) for m in v1["models"] if isinstance(m, str)]
        if names:
            s.add(rules.PROBE_OPEN_MODEL_LISTING, "/v1/models",
                  f"the server lists its models: {', '.join(names[:10])}",
                  evidence="GET /v1/models -> 200")
    for name in sorted(set(names))[:3]:
        path = f"/v2/models/{quote(name, safe='')}"
        response = s.get(path)
        if response.ok and isinstance(response.json(), dict):
            s.add(rules.PROBE_OPEN_INFERENCE, path,
                  f"model {name!r}: metadata answers without credentials, so its "
                  "infer endpoint does too", evidence=f"GET {path} -> {response.status}")
            break
    _check_metrics_path(s)


def _check_metrics(s: _Session, identity: Identity) -> None:
    _check_metrics_path(s, known=True)


def _check_metrics_path(s: _Session, *, known: bool = False) -> None:
    """Metrics on the same origin (TorchServe and Triton serve them on their own port)."""
    response = s.get("/metrics")
    if not response.ok or "# TYPE" not in response.text:
        return
    names = sorted({m.group(1) for m in _MODEL_LABEL.finditer(response.text)})
    if names:
        s.add(rules.PROBE_METRICS_LEAK, "/metrics",
              f"the metrics name {len(names)} model(s): {', '.join(names[:10])}",
              evidence=f"GET /metrics -> {response.status}")


def _names(value: Any, key: str = "name") -> list[str]:
    out: list[str] = []
    if isinstance(value, list):
        for item in value[:200]:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get(key), str):
                out.append(item[key])
    return out


_KINDS: tuple[tuple[Callable[[_Session], Identity | None],
                    Callable[[_Session, Identity], None]], ...] = (
    (_is_gateway, _check_gateway),
    (_is_jupyter, _check_jupyter),
    (_is_ray, _check_ray),
    (_is_mlflow, _check_mlflow),
    (_is_triton_or_oip, _check_oip),
    (_is_kserve_v1, _check_oip),
    (_is_torchserve, _check_torchserve),
    (_is_metrics, _check_metrics),
)
