"""The rules of the ``infra`` capability: ML platform settings (``INFRA-*``) and live probes
(``PROBE-*``).

Most real ML breaches came through infrastructure rather than the model: ShellTorch
(TorchServe's management API reachable from outside with the default ``allowed_urls``,
CVE-2023-43654), ShadowRay (Ray's unauthenticated Jobs API, CVE-2023-48022, MITRE ATLAS case
study AML.CS0023), MLflow's once-default ``admin``/``password1234``, Jupyter servers without a
token, Istio policies that no sidecar enforces, Triton with dynamic model loading. Each rule
here names the setting, why it matters, the fix and where to read more.
"""

from __future__ import annotations

from bastion.findings import Category, Reference, RefKind, Severity
from bastion.rules import Rule

#: MITRE ATLAS case study "ShadowRay" (case studies live under /studies/, not /techniques/).
SHADOWRAY = Reference(RefKind.ATLAS, "AML.CS0023", "https://atlas.mitre.org/studies/AML.CS0023")
#: ATLAS "Exploit Public-Facing Application".
EXPLOIT_PUBLIC_APP = "AML.T0049"
_C = Category.CONFIGURATION


def _rule(id: str, title: str, severity: Severity, description: str, remediation: str,
          *references: Reference | str, category: Category = _C) -> Rule:
    return Rule(id=id, title=title, severity=severity, category=category,
                description=description, remediation=remediation, references=references)


# -- coverage -----------------------------------------------------------------------------------

CONFIG_UNCHECKED = _rule(
    "INFRA-CONFIG-UNCHECKED", "Configuration file could not be checked", Severity.INFO,
    "A file that looks like ML platform configuration (a manifest, a compose file, a "
    "TorchServe or Jupyter config) could not be parsed: a syntax error, text that is not "
    "UTF-8, or a size over the reader's limit. Its settings were not checked.",
    "Fix the syntax, or render templates (`helm template`, `kustomize build`) and scan the "
    "output.", category=Category.COVERAGE)
CONFIG_TOO_COMPLEX = _rule(
    "INFRA-CONFIG-TOO-COMPLEX", "YAML that expands beyond the reader's budget (YAML bomb)",
    Severity.MEDIUM,
    "The YAML uses aliases (or nesting) that expand far beyond its size: the 'billion laughs' "
    "pattern. A Kubernetes API server, a CI tool or a config loader that builds it in full "
    "runs out of memory (CVE-2019-11253 was this against kube-apiserver). Bastion stopped "
    "reading it; its settings were not checked.",
    "Remove the self-referencing aliases; a real manifest never needs them.",
    "CWE-776", "CVE-2019-11253", category=Category.RESOURCE)

# -- TorchServe ---------------------------------------------------------------------------------

TORCHSERVE_MANAGEMENT_EXPOSED = _rule(
    "INFRA-TORCHSERVE-MANAGEMENT-EXPOSED", "TorchServe management API reachable from the network",
    Severity.HIGH,
    "`management_address` binds TorchServe's management API beyond loopback (its default is "
    "http://127.0.0.1:8081), or a Service publishes the management port. The management API "
    "registers models from URLs and scales workers: ShellTorch (CVE-2023-43654) chained it "
    "with the default `allowed_urls` to load a model archive whose handler runs the "
    "attacker's code. Critical when token authorization is off or the model API is on; "
    "TorchServe 0.11 and later require a token and keep the model API off by default, older "
    "releases have neither.",
    "Bind `management_address` to 127.0.0.1 (or a private interface behind a gateway), keep "
    "token authorization on, and never publish the management port with a LoadBalancer or "
    "NodePort Service.",
    "CVE-2023-43654", "CWE-306", "CWE-1188", EXPLOIT_PUBLIC_APP, "AML.T0010", "ML10")
TORCHSERVE_INFERENCE_EXPOSED = _rule(
    "INFRA-TORCHSERVE-INFERENCE-OPEN", "TorchServe inference API exposed without token auth",
    Severity.MEDIUM,
    "`inference_address` binds beyond loopback while token authorization is disabled: "
    "anyone on the network can query every model, list them through the inference API's "
    "description endpoint and extract or evade them by repeated queries.",
    "Keep token authorization on (remove `disable_token_authorization=true`) or put the "
    "inference API behind an authenticating gateway.",
    "CWE-306", "AML.T0040", "AML.T0024", "ML05")
TORCHSERVE_TOKEN_AUTH_DISABLED = _rule(
    "INFRA-TORCHSERVE-TOKEN-AUTH-DISABLED", "TorchServe token authorization disabled",
    Severity.HIGH,
    "`disable_token_authorization=true` (or `--disable-token-auth`, or "
    "`TS_DISABLE_TOKEN_AUTHORIZATION=true`) removes the key TorchServe 0.11+ requires on the "
    "inference and management APIs: whoever reaches a port may use it.",
    "Remove the setting; hand the management key only to operators and the inference key "
    "only to clients (both are in `key_file.json`).",
    "CWE-306", "CWE-1188", EXPLOIT_PUBLIC_APP)
TORCHSERVE_MODEL_API_ENABLED = _rule(
    "INFRA-TORCHSERVE-MODEL-API-ENABLED", "TorchServe model registration API enabled",
    Severity.HIGH,
    "`enable_model_api=true` (or `--enable-model-api`, `TS_ENABLE_MODEL_API=true`) lets API "
    "callers register and delete models while TorchServe runs. A model archive carries "
    "Python handler code, so registering a model is running code on the server.",
    "Leave the model API off and load models at start-up (`load_models`, `--models`); if "
    "registration is needed, keep token authorization on and `allowed_urls` narrow.",
    "CVE-2023-43654", "CWE-94", "AML.T0010", "AML.T0018", "ML10")
TORCHSERVE_ALLOWED_URLS = _rule(
    "INFRA-TORCHSERVE-ALLOWED-URLS", "TorchServe registers models from any URL",
    Severity.HIGH,
    "`allowed_urls` is missing (its default is `file://.*|http(s)?://.*`: every URL and the "
    "local file system) or as wide, while models can be registered through the management "
    "API. That is the server-side request forgery of ShellTorch (CVE-2023-43654): the server "
    "fetches a model archive from wherever the caller says, and runs its handler.",
    "Set `allowed_urls` to the exact buckets or hosts models come from, e.g. "
    "`allowed_urls=https://models.example.com/.*`.",
    "CVE-2023-43654", "CWE-918", "CWE-494", "AML.T0010")
TORCHSERVE_METRICS_EXPOSED = _rule(
    "INFRA-TORCHSERVE-METRICS-EXPOSED", "TorchServe metrics API reachable from the network",
    Severity.LOW,
    "`metrics_address` binds beyond loopback: the Prometheus metrics name every model and "
    "version with request counts and latencies, which maps the deployment for an attacker.",
    "Bind metrics to loopback or a private interface that only the scraper reaches.",
    "CWE-200", "AML.T0007")
TORCHSERVE_CORS_ANY = _rule(
    "INFRA-TORCHSERVE-CORS-ANY", "TorchServe allows cross-origin requests from any site",
    Severity.MEDIUM,
    "`cors_allowed_origin=*` lets any web page a user opens call the TorchServe APIs from the "
    "user's browser, including a management API bound to localhost.",
    "Name the origins that need access, or leave CORS off (the default).",
    "CWE-942")
TORCHSERVE_INSTALL_DEPS = _rule(
    "INFRA-TORCHSERVE-INSTALL-DEPS", "TorchServe installs each model's Python requirements",
    Severity.MEDIUM,
    "`install_py_dep_per_model=true` makes TorchServe `pip install` the requirements file "
    "inside each model archive when the model is registered: a model archive can pull in any "
    "package, and installing a package runs its code.",
    "Build dependencies into the image and leave `install_py_dep_per_model` off.",
    "CWE-494", "AML.T0010", "ML06")

# -- Triton -------------------------------------------------------------------------------------

TRITON_MODEL_CONTROL = _rule(
    "INFRA-TRITON-MODEL-CONTROL-OPEN", "Triton model control API enabled without restriction",
    Severity.HIGH,
    "`--model-control-mode=explicit` enables the model repository API (load, unload, load "
    "with inline files) and no `--http-restricted-api` / `--grpc-restricted-protocol` group "
    "protects `model-repository`. NVIDIA's deployment guide warns that dynamic model loading "
    "can lead to arbitrary code execution (the Python backend runs `model.py`); "
    "CVE-2023-31036 was a path traversal through this very API.",
    "Use `--model-control-mode=none` in production, or restrict the API: "
    "`--http-restricted-api=model-repository:admin-key=<secret>` and "
    "`--grpc-restricted-protocol=model-repository:admin-key=<secret>`.",
    "CVE-2023-31036", "CWE-306", "CWE-94", EXPLOIT_PUBLIC_APP, "AML.T0018", "ML10")
TRITON_MODEL_POLLING = _rule(
    "INFRA-TRITON-MODEL-POLLING", "Triton reloads whatever appears in its model repository",
    Severity.MEDIUM,
    "`--model-control-mode=poll` makes Triton load every change in the model repository as it "
    "happens: whoever can write to the repository (a shared volume, a bucket) changes the "
    "code Triton runs, with no restart or review in between.",
    "Use `--model-control-mode=none` and roll out models with a restart; if polling is "
    "needed, mount the repository read-only and restrict who writes to its source.",
    "CWE-494", "AML.T0018", "AML.T0010", "ML10")
TRITON_ADMIN_API = _rule(
    "INFRA-TRITON-ADMIN-API-OPEN", "Triton logging, trace or shared-memory API unrestricted",
    Severity.LOW,
    "Triton's `logging`, `trace` and `shared-memory` API groups change server state and are "
    "open to every client unless a restricted-API group covers them. The logging API let "
    "clients point the log at any file (CVE-2024-0087); the shared-memory API reads and "
    "writes server memory regions (CVE-2024-0088).",
    "Restrict them: `--http-restricted-api=logging,trace,shared-memory:admin-key=<secret>` "
    "and the same with `--grpc-restricted-protocol` (or disable the protocol you do not "
    "use).",
    "CVE-2024-0087", "CVE-2024-0088", "CWE-306")
TRITON_METRICS_EXPOSED = _rule(
    "INFRA-TRITON-METRICS-EXPOSED", "Triton metrics published on every interface",
    Severity.LOW,
    "Triton publishes Prometheus metrics by default on port 8002 of every interface: each "
    "model's name and version with request and GPU statistics.",
    "Pass `--allow-metrics=false` when nothing scrapes them, or `--metrics-address` of a "
    "private interface.",
    "CWE-200", "AML.T0007")
TRITON_TRACE_TENSORS = _rule(
    "INFRA-TRITON-TRACE-TENSORS", "Triton traces record input and output tensors",
    Severity.MEDIUM,
    "Trace level `TENSORS` writes every request's inputs and outputs into the trace file: "
    "user data and model outputs end up in logs with whatever retention and access those "
    "have.",
    "Trace `TIMESTAMPS` only, or turn tracing off (`--trace-config level=off`).",
    "CWE-532", "AML.T0024")

# -- Ray ----------------------------------------------------------------------------------------

RAY_DASHBOARD_EXPOSED = _rule(
    "INFRA-RAY-DASHBOARD-EXPOSED", "Ray dashboard and Jobs API reachable without authentication",
    Severity.CRITICAL,
    "The Ray head's dashboard (port 8265, which serves the Jobs API) or its client port "
    "(10001) is bound beyond loopback or published (`--dashboard-host=0.0.0.0`, a published "
    "container port, a LoadBalancer/NodePort Service) and token authentication is not on. "
    "The Jobs API runs any command it is sent: this is ShadowRay (CVE-2023-48022), exploited "
    "in the wild to steal models, credentials and compute.",
    "Set `RAY_AUTH_MODE=token` on every node (Ray 2.52+; KubeRay: `spec.authOptions.mode: "
    "token`), keep the dashboard on 127.0.0.1, and never publish ports 8265/10001/6379 "
    "beyond a trusted network.",
    SHADOWRAY, "CVE-2023-48022", "CWE-306", "CWE-1188", EXPLOIT_PUBLIC_APP, "AML.T0035")
RAY_TOKEN_AUTH_OFF = _rule(
    "INFRA-RAY-TOKEN-AUTH-OFF", "Ray cluster without token authentication", Severity.MEDIUM,
    "Ray authenticates nothing unless `RAY_AUTH_MODE=token` (Ray 2.52+) is set; KubeRay "
    "binds the dashboard to every pod interface. Any workload in the cluster (or anyone "
    "reaching the Service) can submit jobs, that is run code with the cluster's credentials "
    "and data. High when authentication is explicitly disabled.",
    "KubeRay 1.5+: `spec.authOptions: {mode: token}`; otherwise set `RAY_AUTH_MODE=token` "
    "and a `RAY_AUTH_TOKEN` from a Secret on every Ray container.",
    SHADOWRAY, "CVE-2023-48022", "CWE-306", "CWE-1188")

# -- MLflow -------------------------------------------------------------------------------------

MLFLOW_DEFAULT_ADMIN_PASSWORD = _rule(
    "INFRA-MLFLOW-DEFAULT-ADMIN-PASSWORD", "MLflow admin password is the published default",
    Severity.CRITICAL,
    "The MLflow basic-auth admin password is `password1234`, the default that MLflow's "
    "`basic_auth.ini` shipped for years (GHSA-gq3w-7jj3-x7gr). Anyone who knows MLflow logs "
    "in as admin: every experiment, artifact and registered model can be read, replaced or "
    "deleted.",
    "Set a strong `admin_password` (or `MLFLOW_AUTH_ADMIN_PASSWORD` from a secret store) "
    "before the first start, or rotate it through the update-password API.",
    "GHSA-gq3w-7jj3-x7gr", "CWE-1392", "CWE-798", "AML.T0012", "ML05", "ML10")
MLFLOW_NO_AUTH = _rule(
    "INFRA-MLFLOW-NO-AUTH", "MLflow tracking server exposed without authentication",
    Severity.HIGH,
    "`mlflow server` binds beyond loopback (`--host 0.0.0.0`) without `--app-name` "
    "`basic-auth` (or another auth app): the REST API lets anyone on the network read and "
    "change experiments, download every artifact and model, and register or replace model "
    "versions that deployments pull.",
    "Run with `--app-name basic-auth` (and a strong admin password) or behind an "
    "authenticating reverse proxy; bind to 127.0.0.1 otherwise.",
    "CWE-306", EXPLOIT_PUBLIC_APP, "AML.T0035", "AML.T0010", "ML05", "ML10")
MLFLOW_SECURITY_MIDDLEWARE = _rule(
    "INFRA-MLFLOW-SECURITY-MIDDLEWARE-OFF", "MLflow host and CORS checks disabled",
    Severity.MEDIUM,
    "`--disable-security-middleware`, `--cors-allowed-origins '*'` or `--allowed-hosts '*'` "
    "removes MLflow's protection against DNS rebinding and cross-site requests: a web page a "
    "user opens can drive the tracking server from the user's browser.",
    "Keep the middleware; list the real origins and host names instead of `*`.",
    "CWE-942", "CWE-346")

# -- Jupyter ------------------------------------------------------------------------------------

JUPYTER_NO_AUTH = _rule(
    "INFRA-JUPYTER-NO-AUTH", "Jupyter server without a token or password", Severity.HIGH,
    "The token is set to the empty string and no password is set: Jupyter then accepts every "
    "request, and its kernels run arbitrary code. Critical when the server also listens on "
    "every interface.",
    "Remove the empty token (Jupyter generates one) or set a hashed password; put shared "
    "servers behind JupyterHub or an authenticating proxy.",
    "CWE-306", "CWE-1188", EXPLOIT_PUBLIC_APP)
JUPYTER_ANY_ORIGIN = _rule(
    "INFRA-JUPYTER-ANY-ORIGIN", "Jupyter accepts cross-origin requests from any site",
    Severity.HIGH,
    "`allow_origin='*'` (or an `allow_origin_pat` matching everything) lets any web page the "
    "user opens call the Jupyter API, start kernels and run code in them.",
    "Remove `allow_origin`, or name the exact origins that embed the server.",
    "CWE-942", "CWE-346")
JUPYTER_XSRF_DISABLED = _rule(
    "INFRA-JUPYTER-XSRF-DISABLED", "Jupyter cross-site request forgery check disabled",
    Severity.HIGH,
    "`disable_check_xsrf=True` removes Jupyter's XSRF check: a page in the user's browser "
    "can post to the server with the user's cookie, which means running code in a kernel.",
    "Remove `disable_check_xsrf`; API clients should send the token in the Authorization "
    "header instead.",
    "CWE-352")
JUPYTER_BIND_ALL = _rule(
    "INFRA-JUPYTER-BIND-ALL", "Jupyter listens on every interface", Severity.LOW,
    "`ip='0.0.0.0'` (or `'*'`) makes the server reachable from every network the host is "
    "on; its token is then the only barrier between the network and code execution.",
    "Bind to 127.0.0.1 and reach the server through SSH forwarding or an authenticating "
    "proxy; in a container, publish the port on 127.0.0.1 only.",
    "CWE-668")

# -- KServe / Istio -----------------------------------------------------------------------------

KSERVE_POLICY_NOT_ENFORCED = _rule(
    "INFRA-KSERVE-AUTH-POLICY-NOT-ENFORCED",
    "Istio authentication policy that no sidecar enforces", Severity.HIGH,
    "An Istio `AuthorizationPolicy` or `RequestAuthentication` protects an InferenceService "
    "whose pods run without the Istio sidecar (`sidecar.istio.io/inject: \"false\"` on the "
    "InferenceService, or `istio-injection: disabled` on its namespace). Istio enforces "
    "policies in the sidecar: without one, the JWT and authorization rules are silently "
    "ignored and the model answers anyone who reaches the pod.",
    "Enable sidecar injection for the InferenceService (annotation "
    "`sidecar.istio.io/inject: \"true\"`, namespace label `istio-injection=enabled`) or "
    "enforce authentication at a gateway the traffic cannot bypass.",
    "CWE-306", "CWE-284", "AML.T0040")

# -- serving pods and containers ----------------------------------------------------------------

SERVING_MODEL_STORE_WRITABLE = _rule(
    "INFRA-SERVING-MODEL-STORE-WRITABLE", "Model store mounted writable into a serving container",
    Severity.HIGH,
    "A model server mounts its model store (a persistent volume, host path or bind mount) "
    "without `readOnly`/`:ro`. A compromised or buggy server can then rewrite the models it "
    "and every other replica load, and a model file is code for most formats: a single "
    "foothold becomes a persistent backdoor.",
    "Mount model stores read-only (`readOnly: true`, `:ro`); write them only from the "
    "deployment pipeline that scans and signs models.",
    "CWE-732", "AML.T0018", "AML.T0010", "ML10")
SERVING_RUNS_AS_ROOT = _rule(
    "INFRA-SERVING-RUNS-AS-ROOT", "Model server runs as root", Severity.HIGH,
    "A model-serving container runs as root (`runAsUser: 0`, `runAsNonRoot: false`, "
    "`user: root`, `USER root`) or is not required to run as non-root. Model servers run "
    "model code (handlers, custom ops, pickles): as root, one malicious model owns the "
    "container and anything it mounts. Low when root is only not excluded.",
    "Set `securityContext.runAsNonRoot: true` and a non-zero `runAsUser` (Triton's image has "
    "user 1000, TorchServe's `model-server`).",
    "CWE-250", "AML.T0011")
SERVING_PRIVILEGED = _rule(
    "INFRA-SERVING-PRIVILEGED", "Model server container is privileged", Severity.HIGH,
    "`privileged: true` gives the container every capability and the host's devices: code "
    "in a model that escapes the server process controls the node. GPUs do not need it (the "
    "device plugin or `--gpus` exposes them).",
    "Remove `privileged`; use the GPU device plugin and drop all capabilities.",
    "CWE-250")
SERVING_PRIVILEGE_ESCALATION = _rule(
    "INFRA-SERVING-PRIVILEGE-ESCALATION", "Model server may gain privileges", Severity.MEDIUM,
    "`allowPrivilegeEscalation: true` lets processes in the serving container gain more "
    "privileges than their parent (setuid binaries): a model's code can climb to root.",
    "Set `allowPrivilegeEscalation: false` and drop all capabilities.",
    "CWE-250")

STATIC_RULES: tuple[Rule, ...] = (
    CONFIG_UNCHECKED, CONFIG_TOO_COMPLEX,
    TORCHSERVE_MANAGEMENT_EXPOSED, TORCHSERVE_INFERENCE_EXPOSED, TORCHSERVE_TOKEN_AUTH_DISABLED,
    TORCHSERVE_MODEL_API_ENABLED, TORCHSERVE_ALLOWED_URLS, TORCHSERVE_METRICS_EXPOSED,
    TORCHSERVE_CORS_ANY, TORCHSERVE_INSTALL_DEPS,
    TRITON_MODEL_CONTROL, TRITON_MODEL_POLLING, TRITON_ADMIN_API, TRITON_METRICS_EXPOSED,
    TRITON_TRACE_TENSORS,
    RAY_DASHBOARD_EXPOSED, RAY_TOKEN_AUTH_OFF,
    MLFLOW_DEFAULT_ADMIN_PASSWORD, MLFLOW_NO_AUTH, MLFLOW_SECURITY_MIDDLEWARE,
    JUPYTER_NO_AUTH, JUPYTER_ANY_ORIGIN, JUPYTER_XSRF_DISABLED, JUPYTER_BIND_ALL,
    KSERVE_POLICY_NOT_ENFORCED,
    SERVING_MODEL_STORE_WRITABLE, SERVING_RUNS_AS_ROOT, SERVING_PRIVILEGED,
    SERVING_PRIVILEGE_ESCALATION,
)

# -- live probes (`bastion probe`) --------------------------------------------------------------

PROBE_IDENTIFIED = _rule(
    "PROBE-IDENTIFIED", "Server identified", Severity.INFO,
    "The endpoint answered and was identified as the named ML server (kind and version, as "
    "far as the server tells). Every probed target reports its identification or an error.",
    "None needed; the other findings for this target say what is wrong with it.")
PROBE_UNKNOWN = _rule(
    "PROBE-UNKNOWN-SERVER", "HTTP server not recognised as an ML server", Severity.INFO,
    "The endpoint answered HTTP, but none of the read-only requests matched a known ML "
    "server (TorchServe, Triton, KServe/Open Inference Protocol, MLflow, Ray dashboard, "
    "Jupyter, Bastion's gateway). Nothing else was checked.",
    "Check that the URL names the server's port and path prefix.", category=Category.COVERAGE)
PROBE_UNREACHABLE = _rule(
    "PROBE-UNREACHABLE", "Endpoint unreachable", Severity.LOW,
    "The connection failed (refused, no route, unknown host): the endpoint could not be "
    "checked. From where the probe ran, it is not exposed.",
    "Probe from the network the threat comes from, with the right host and port.",
    category=Category.COVERAGE)
PROBE_TIMEOUT = _rule(
    "PROBE-TIMEOUT", "Endpoint did not answer in time", Severity.LOW,
    "The endpoint accepted the connection (or did not refuse it) but gave no complete answer "
    "within the probe's time limits; it was not fully checked.",
    "Raise `--timeout`/`--deadline` if the server is merely slow; a port that never answers "
    "may be filtered.", category=Category.COVERAGE)
PROBE_TLS_ERROR = _rule(
    "PROBE-TLS-ERROR", "TLS handshake failed", Severity.LOW,
    "The TLS handshake failed: the port speaks plain HTTP, the certificate is not trusted "
    "or does not name the host, or the protocol versions do not match. The endpoint was not "
    "checked.",
    "Use http:// for plain-HTTP ports, fix the certificate, or pass `--insecure` to probe "
    "an endpoint with a self-signed certificate.", "CWE-295", category=Category.COVERAGE)
PROBE_NOT_HTTP = _rule(
    "PROBE-NOT-HTTP", "Endpoint does not speak HTTP", Severity.LOW,
    "The endpoint answered with bytes that are not an HTTP response (another protocol, or "
    "garbage); it was not checked.",
    "Check the port: gRPC ports (Triton 8001, TorchServe 7070/7071) are not probed.",
    category=Category.COVERAGE)
PROBE_REDIRECT_OFFSITE = _rule(
    "PROBE-REDIRECT-OFFSITE", "Redirect to another origin not followed", Severity.INFO,
    "The endpoint redirected to a different scheme, host or port. The probe only talks to the "
    "hosts and ports it was given, so the redirect was not followed.",
    "Probe the redirect target explicitly if it is yours.", category=Category.COVERAGE)
PROBE_OPEN_MANAGEMENT = _rule(
    "PROBE-OPEN-MANAGEMENT-API", "Management API answers without credentials", Severity.CRITICAL,
    "A management or code-running API answered a read-only request without any credentials: "
    "TorchServe's management API, Ray's Jobs API, Jupyter's kernels or contents API, the "
    "MLflow REST API, Triton's logging/trace settings. The same API, unauthenticated, also "
    "accepts the requests that register models, submit jobs or start kernels.",
    "Turn on the server's authentication (TorchServe token auth, RAY_AUTH_MODE=token, a "
    "Jupyter token, MLflow basic-auth) and keep management ports off shared networks.",
    SHADOWRAY, "CVE-2023-43654", "CVE-2023-48022", "CWE-306", EXPLOIT_PUBLIC_APP)
PROBE_OPEN_INFERENCE = _rule(
    "PROBE-OPEN-INFERENCE-API", "Inference API answers without credentials", Severity.HIGH,
    "The model metadata and readiness endpoints of an inference server answered without "
    "credentials, so its inference endpoints (which share that access control) do too: "
    "anyone reaching it can query, extract or evade the model. (Inference itself is a POST "
    "and is never sent by the probe.)",
    "Put the inference API behind authentication (a gateway, Istio with an enforced "
    "policy, the server's own tokens).",
    "CWE-306", "AML.T0040", "AML.T0024", "ML05")
PROBE_OPEN_MODEL_LISTING = _rule(
    "PROBE-OPEN-MODEL-LISTING", "Model names listed without credentials", Severity.MEDIUM,
    "An endpoint lists the served or registered models (names, versions, sources) without "
    "credentials: reconnaissance for targeted attacks and model theft.",
    "Require authentication for model listing and metadata endpoints.",
    "CWE-200", "AML.T0007", "AML.T0014")
PROBE_MODEL_DOWNLOAD = _rule(
    "PROBE-MODEL-DOWNLOAD", "Model artifacts downloadable without credentials",
    Severity.CRITICAL,
    "Stored artifacts (model files, run outputs) can be listed and downloaded without "
    "credentials: the model itself, and whatever training data or secrets were logged with "
    "it, walk out.",
    "Require authentication on the artifact proxy (MLflow `--app-name basic-auth`) or serve "
    "artifacts from private storage with signed URLs.",
    "CWE-306", "AML.T0035", "AML.T0044", "ML05")
PROBE_INVALID_TOKEN_ACCEPTED = _rule(
    "PROBE-INVALID-TOKEN-ACCEPTED", "Obviously invalid credentials accepted", Severity.CRITICAL,
    "The endpoint refused a request without credentials but answered the same request "
    "carrying an obviously invalid token or password: authentication is checked for "
    "presence only.",
    "Fix the authentication layer so credentials are verified, and rotate existing ones.",
    "CWE-287", "CWE-306", "AML.T0012")
PROBE_METRICS_LEAK = _rule(
    "PROBE-METRICS-MODEL-NAMES", "Metrics endpoint names the served models", Severity.LOW,
    "A Prometheus metrics endpoint answers without credentials and its series carry model "
    "names and versions (`model=\"...\"`): an inventory of the deployment for anyone who "
    "asks.",
    "Serve metrics on a private interface or port that only the scraper reaches.",
    "CWE-200", "AML.T0007")

PROBE_RULES: tuple[Rule, ...] = (
    PROBE_IDENTIFIED, PROBE_UNKNOWN, PROBE_UNREACHABLE, PROBE_TIMEOUT, PROBE_TLS_ERROR,
    PROBE_NOT_HTTP, PROBE_REDIRECT_OFFSITE, PROBE_OPEN_MANAGEMENT, PROBE_OPEN_INFERENCE,
    PROBE_OPEN_MODEL_LISTING, PROBE_MODEL_DOWNLOAD, PROBE_INVALID_TOKEN_ACCEPTED,
    PROBE_METRICS_LEAK,
)

RULES: tuple[Rule, ...] = STATIC_RULES + PROBE_RULES
