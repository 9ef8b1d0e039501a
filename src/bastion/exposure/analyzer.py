"""The ``infra`` capability of ``bastion scan``: ML platform configuration files.

One analyzer claims every kind of file that configures an ML server, because one file can hold
several platforms (a compose file with Ray, MLflow and Jupyter services; a manifest with a
Triton Deployment, a Service and an Istio policy), and a capability gives each file to one
analyzer. It recognises the file by name and first bytes, parses it with the bounded reader for
its format (never running or importing it), and hands the parts to the platform modules:
:mod:`~bastion.exposure.torchserve`, :mod:`~bastion.exposure.triton`,
:mod:`~bastion.exposure.ray`, :mod:`~bastion.exposure.mlflow`,
:mod:`~bastion.exposure.jupyter`, :mod:`~bastion.exposure.kserve` and
:mod:`~bastion.exposure.kubernetes`.

A file that cannot be parsed is an ``INFRA-CONFIG-UNCHECKED`` finding (info), a YAML bomb an
``INFRA-CONFIG-TOO-COMPLEX`` one: never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from bastion.analyzer import HEAD_SIZE, Context, Target
from bastion.exposure import (
    jupyter,
    kserve,
    kubernetes,
    mlflow,
    ray,
    rules,
    torchserve,
    triton,
)
from bastion.exposure._commands import (
    Command,
    EnvVar,
    Mount,
    Publish,
    argv_of,
    clip_text,
    dockerfile_commands,
    heredocs,
    parse_port,
    parse_volume,
    shell_commands,
    unwrap,
)
from bastion.exposure._sink import Sink
from bastion.exposure._yaml import (
    MAX_BYTES,
    YamlBomb,
    YamlError,
    YMap,
    YSeq,
    load_documents,
    walk_strings,
)
from bastion.findings import Finding, Severity
from bastion.rules import Rule

#: Words that mark a script, Dockerfile or YAML file as launching or configuring an ML server.
LAUNCH_MARKERS = (
    b"tritonserver", b"torchserve", b"mlflow", b"jupyter", b"start-notebook", b"ray start",
    b"rayproject", b"--dashboard-host", b"RAY_AUTH_MODE", b"TS_DISABLE_TOKEN",
    b"TS_ENABLE_MODEL_API", b"TS_MANAGEMENT_ADDRESS", b"MLFLOW_AUTH_ADMIN_PASSWORD",
)
_YAML_MARKERS = (b"apiVersion", b"services:", b"cluster_name", b"head_start_ray_commands",
                 *LAUNCH_MARKERS)
_JUPYTER_PY = re.compile(r"jupyter\w*_config\.py")
_JUPYTER_JSON = re.compile(r"jupyter\w*_config\.json")
_SHELL_NAMES = frozenset({"procfile", "entrypoint", "docker-entrypoint", "start", "run"})
#: Strings in YAML that are worth reading as a shell command (CI ``run:``, Argo, ...).
_LAUNCH_WORDS = re.compile(r"\b(tritonserver|torchserve|mlflow (server|ui)|jupyter|"
                           r"start-notebook|ray start)\b")
_COMMAND_KEYS = frozenset({"command", "args", "entrypoint"})
_RAY_LAUNCHER_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands",
                      "worker_setup_commands", "head_start_ray_commands",
                      "worker_start_ray_commands")
#: Neighbouring YAML files read for the KServe/Istio check.
MAX_NEIGHBOURS = 64
MAX_NEIGHBOUR_BYTES = 1 << 20
#: Helm/Go template expressions, replaced so the rest of a template parses as YAML.
_TEMPLATE_LINE = re.compile(r"^\s*\{\{-?.*-?\}\}\s*$")
_TEMPLATE_EXPR = re.compile(r"\{\{-?.*?-?\}\}")


def file_kind(target: Target) -> str | None:
    """What kind of configuration the target is, from its name and first bytes (cheap)."""
    head = target.head
    if b"\0" in head:
        return None
    name = target.name.lower()
    if name.endswith(".properties"):
        return "properties" if _torchserve_keys(head) else None
    if _JUPYTER_PY.fullmatch(name):
        return "jupyter-py"
    if _JUPYTER_JSON.fullmatch(name):
        return "jupyter-json"
    if name == "basic_auth.ini" or (name.endswith(".ini") and b"[mlflow]" in head):
        return "mlflow-ini"
    if name.endswith((".yaml", ".yml")):
        return "yaml" if any(m in head for m in _YAML_MARKERS) else None
    if name.endswith(".json"):
        return "yaml" if b'"apiVersion"' in head and b'"kind"' in head else None
    long_file = target.size > HEAD_SIZE  # a marker may come after the first bytes
    marked = long_file or any(m in head for m in LAUNCH_MARKERS)
    if name in ("dockerfile", "containerfile") or name.startswith(("dockerfile.",
                                                                   "containerfile.")) \
            or name.endswith((".dockerfile", ".containerfile")):
        return "dockerfile" if marked else None
    if name.endswith((".sh", ".bash")) or name in _SHELL_NAMES:
        return "shell" if marked else None
    if name == ".env" or name.endswith(".env"):
        return "env" if any(m in head for m in LAUNCH_MARKERS) else None
    return None


def _torchserve_keys(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    for line in text.splitlines():
        key = re.split(r"[=:\s]", line.strip(), maxsplit=1)[0]
        if key in torchserve.KEYS:
            return True
    return False


class ExposureAnalyzer:
    """Insecure settings of ML servers and platforms in configuration files."""

    name = "infra-exposure"
    capability = "infra"
    rules: tuple[Rule, ...] = rules.STATIC_RULES

    def claims(self, target: Target) -> bool:
        return file_kind(target) is not None

    def analyze(self, target: Target, ctx: Context) -> Iterable[Finding]:
        kind = file_kind(target)
        if kind is None:
            return []
        sink = Sink(target.location)
        limit = MAX_BYTES
        if target.size > limit:
            sink.add(rules.CONFIG_UNCHECKED, None,
                     f"{target.size} bytes is over the {limit}-byte limit for configuration "
                     "files; not checked", severity=Severity.LOW)
            return sink.findings
        with target.open() as stream:
            data = stream.read(limit + 1)
        if b"\0" in data:
            sink.add(rules.CONFIG_UNCHECKED, None, "binary content in a configuration file; "
                     "not checked", severity=Severity.LOW)
            return sink.findings
        text = data.decode("utf-8-sig", "replace")
        try:
            _HANDLERS[kind](text, target, sink)
        except YamlBomb as exc:
            sink.add(rules.CONFIG_TOO_COMPLEX, None, f"not read: {exc}")
        except (YamlError, ValueError) as exc:
            sink.add(rules.CONFIG_UNCHECKED, None, f"could not be parsed: {exc}")
        return sink.findings


# -- per format ---------------------------------------------------------------------------------

def _properties(text: str, target: Target, sink: Sink) -> None:
    from bastion.exposure._properties import parse

    torchserve.check_properties(parse(text), sink)


def _jupyter_py(text: str, target: Target, sink: Sink) -> None:
    from bastion.exposure._pyconfig import parse

    jupyter.check(jupyter.settings_from_python(parse(text)), sink, target.name)


def _jupyter_json(text: str, target: Target, sink: Sink) -> None:
    jupyter.check(jupyter.settings_from_json(text), sink, target.name)


def _mlflow_ini(text: str, target: Target, sink: Sink) -> None:
    mlflow.check_ini(text, sink)


def _env_file(text: str, target: Target, sink: Sink) -> None:
    env: dict[str, EnvVar] = {}
    for number, raw in enumerate(text.splitlines()[:20_000], 1):
        line = raw.strip()
        if line.startswith("export "):
            line = line[7:].strip()
        key, eq, value = line.partition("=")
        if eq and key and not key.startswith("#"):
            env[key.strip()] = EnvVar(value.strip().strip("'\""), number)
    check_env(env, sink)


def _shell(text: str, target: Target, sink: Sink) -> None:
    env: dict[str, EnvVar] = {}
    check_commands(shell_commands(text, 1, env), sink)
    check_env(env, sink)
    _embedded_files(text, target, sink)


def _embedded_files(text: str, target: Target, sink: Sink) -> None:
    """Configuration files a script writes with a heredoc (``cat > config.properties <<EOF``)
    are checked as if they were files, at their lines in the script."""
    for doc in heredocs(text):
        name = doc.target.rsplit("/", 1)[-1].lower()
        kind = ("properties" if name.endswith(".properties") else
                "jupyter-py" if _JUPYTER_PY.fullmatch(name) else
                "mlflow-ini" if name.endswith(".ini") else None)
        if kind is None:
            continue
        padded = "\n" * (doc.first_line - 1) + doc.body  # keeps the script's line numbers
        try:
            _HANDLERS[kind](padded, target, sink)
        except ValueError:
            continue  # an unparsable fragment of a script is not the script's problem


def _dockerfile(text: str, target: Target, sink: Sink) -> None:
    commands, env, user, user_line = dockerfile_commands(text)
    check_commands(commands, sink)
    check_env(env, sink)
    _embedded_files(text, target, sink)
    if user is not None and user.split(":")[0] in ("root", "0") and any(
            kubernetes.is_serving(YMap(), [c]) for c in commands):
        sink.add(rules.SERVING_RUNS_AS_ROOT, user_line,
                 f"the image's final USER is {user} and it starts a model server",
                 evidence=f"USER {user}")


def _yaml(text: str, target: Target, sink: Sink) -> None:
    try:
        documents = load_documents(text)
    except YamlBomb:
        raise
    except YamlError:
        if "{{" not in text:
            raise
        documents = load_documents(_untemplate(text))  # a Helm template: read what is YAML
    docs = [d for d in documents if isinstance(d, YMap)]
    context = _FileContext.of(docs)
    for doc in docs:
        _document(doc, context, sink)
    if any(str(d.get("kind")) in kserve.POLICY_KINDS for d in docs):
        everything = [(d, target.name) for d in docs] + _neighbour_docs(target)
        kserve.check(docs, everything, sink)


def _untemplate(text: str) -> str:
    """Template-only lines blanked (keeping line numbers), expressions made placeholders."""
    return "\n".join("" if _TEMPLATE_LINE.match(line) else _TEMPLATE_EXPR.sub("TEMPLATE", line)
                     for line in text.splitlines())


_HANDLERS: dict[str, Any] = {
    "properties": _properties, "jupyter-py": _jupyter_py, "jupyter-json": _jupyter_json,
    "mlflow-ini": _mlflow_ini, "env": _env_file, "shell": _shell, "dockerfile": _dockerfile,
    "yaml": _yaml,
}


# -- shared checks ------------------------------------------------------------------------------

def check_commands(commands: Iterable[Command], sink: Sink) -> None:
    """Every platform's command-line checks, plus container settings and environment."""
    for cmd in commands:
        triton.check_command(cmd, sink)
        torchserve.check_command(cmd, sink)
        ray.check_command(cmd, sink)
        mlflow.check_command(cmd, sink)
        if jupyter.is_jupyter(cmd):
            jupyter.check(jupyter.settings_from_command(cmd), sink,
                          f"{cmd.program} command line")
        kubernetes.check_container_command(cmd, sink)
        check_env(cmd.env, sink)


def check_env(env: Mapping[str, EnvVar], sink: Sink) -> None:
    torchserve.check_env(env, sink)
    ray.check_env(env, sink)
    mlflow.check_env(env, sink)


# -- YAML documents -----------------------------------------------------------------------------

class _FileContext:
    """What the whole file says, for checks that need more than one document."""

    def __init__(self, torchserve: bool, ray: bool, ray_auth: bool) -> None:
        self.torchserve = torchserve
        self.ray = ray
        self.ray_auth = ray_auth

    @classmethod
    def of(cls, docs: list[YMap]) -> _FileContext:
        texts = " ".join(s for d in docs for s, _ in walk_strings(d))
        ray_docs = [d for d in docs if ray.kuberay_cluster_spec(d) is not None]
        ray_auth = any(ray.kuberay_auth(spec)[0] for d in ray_docs
                       if (spec := ray.kuberay_cluster_spec(d)) is not None)
        env_token = "RAY_AUTH_MODE" in texts and "token" in texts
        ray_seen = bool(ray_docs) or "ray start" in texts or "rayproject" in texts
        return cls("torchserve" in texts, ray_seen, ray_auth or env_token)


def _document(doc: YMap, context: _FileContext, sink: Sink) -> None:
    for ref in kubernetes.pods(doc):
        for index, container in enumerate(ref.containers):
            commands = kubernetes.container_commands(container, ref.owner)
            ref.commands[index] = commands
            check_commands(commands, sink)
            check_env(kubernetes.container_env(container), sink)
        kubernetes.check_pod(ref, sink)
    ray.check_kuberay(doc, sink)
    services = kubernetes.service_ports(doc)
    if services is not None:
        if context.torchserve:
            kubernetes.check_torchserve_service(doc, sink)
        if context.ray:
            ray.check_service_ports(services[1], services[0], context.ray_auth, sink)
    if "kind" not in doc and isinstance(doc.get("services"), YMap):
        _compose(doc["services"], sink)
    if "kind" not in doc and any(k in doc for k in _RAY_LAUNCHER_KEYS):
        _ray_launcher(doc, sink)
    _loose_strings(doc, sink)


def _compose(services: YMap, sink: Sink) -> None:
    for name, service in services.items():
        if not isinstance(service, YMap):
            continue
        env = _compose_env(service.get("environment"))
        publish = tuple(p for p in (_compose_port(item, line) for item, line in
                                    _items(service.get("ports"))) if p is not None)
        mounts = tuple(_compose_volume(item, line) for item, line in
                       _items(service.get("volumes")))
        user = service.get("user")
        base = Command((), service.line, f"service {name}", env, publish, mounts,
                       str(service.get("image", "")), str(user) if user is not None else None,
                       service.get("privileged") is True, where=f"compose service {name}")
        argv = [*(argv_of(service.get("entrypoint")) or []),
                *(argv_of(service.get("command")) or [])]
        key = "command" if "command" in service else "entrypoint"
        line = service.line_of(key) if argv else service.line
        commands = (unwrap(argv, line, clip_text(" ".join(argv)), dict(env), base=base)
                    if argv else [base])
        check_commands(commands, sink)
        check_env(env, sink)


def _items(value: object) -> list[tuple[Any, int | None]]:
    if isinstance(value, YSeq):
        return [(item, value.line_of(i)) for i, item in enumerate(value)]
    return []


def _compose_env(value: object) -> dict[str, EnvVar]:
    env: dict[str, EnvVar] = {}
    if isinstance(value, YMap):
        for key, item in value.items():
            env[key] = EnvVar("" if item is None else str(item).lower()
                              if isinstance(item, bool) else str(item), value.line_of(key))
    elif isinstance(value, YSeq):
        for index, item in enumerate(value):
            key, eq, val = str(item).partition("=")
            if eq:
                env[key] = EnvVar(val, value.line_of(index))
    return env


def _compose_port(item: Any, line: int | None) -> Publish | None:
    if isinstance(item, YMap):  # long syntax
        target = str(item.get("target", ""))
        published = str(item.get("published", ""))
        host_ip = str(item.get("host_ip", ""))
        return Publish(host_ip, published, target, item.line,
                       f"{host_ip + ':' if host_ip else ''}{published}:{target}")
    return parse_port(str(item), line)


def _compose_volume(item: Any, line: int | None) -> Mount:
    if isinstance(item, YMap):  # long syntax
        read_only = item.get("read_only") is True
        return Mount(str(item.get("source", "")), str(item.get("target", "")), read_only,
                     item.line, f"{item.get('source')}:{item.get('target')}"
                     + (":ro" if read_only else ""))
    return parse_volume(str(item), line)


def _ray_launcher(doc: YMap, sink: Sink) -> None:
    """A Ray cluster launcher file: its command lists are shell lines."""
    env: dict[str, EnvVar] = {}
    for key in _RAY_LAUNCHER_KEYS:
        items = doc.get(key)
        if isinstance(items, YSeq):
            for index, item in enumerate(items):
                if isinstance(item, str):
                    check_commands(shell_commands(item, items.line_of(index), env,
                                                  single_line=True), sink)
    check_env(env, sink)


def _loose_strings(doc: YMap, sink: Sink) -> None:
    """Launch commands in other strings: CI ``run:`` steps, Argo scripts, Helm values."""
    for text, line in _strings_outside_commands(doc, 0):
        if " " in text and _LAUNCH_WORDS.search(text):
            multi = "\n" in text.strip()  # a block scalar starts on the line after its key
            check_commands(shell_commands(text, line + 1 if multi else line, {},
                                          single_line=not multi), sink)


def _strings_outside_commands(value: object, depth: int) -> Iterable[tuple[str, int]]:
    if depth > 64:
        return
    if isinstance(value, YMap):
        for key, item in value.items():
            if key in _COMMAND_KEYS or key in _RAY_LAUNCHER_KEYS:
                continue
            if isinstance(item, str):
                yield item, value.line_of(key)
            else:
                yield from _strings_outside_commands(item, depth + 1)
    elif isinstance(value, YSeq):
        for index, item in enumerate(value):
            if isinstance(item, str):
                yield item, value.line_of(index)
            else:
                yield from _strings_outside_commands(item, depth + 1)


def _neighbour_docs(target: Target) -> list[tuple[YMap, str]]:
    """The YAML documents of the files beside this one (a kustomize or Helm output folder)."""
    if target.location.members:
        return []
    path = Path(target.location.path)
    try:
        siblings = sorted(p for p in path.parent.iterdir()
                          if p.suffix.lower() in (".yaml", ".yml") and p.name != path.name)
    except OSError:
        return []
    out: list[tuple[YMap, str]] = []
    for sibling in siblings[:MAX_NEIGHBOURS]:
        try:
            if not sibling.is_file() or sibling.stat().st_size > MAX_NEIGHBOUR_BYTES:
                continue
            text = sibling.read_bytes()[:MAX_NEIGHBOUR_BYTES].decode("utf-8", "replace")
            docs = load_documents(text)
        except (OSError, YamlError):
            continue
        out.extend((d, sibling.name) for d in docs if isinstance(d, YMap))
    return out
