"""Ray: ``ray start`` command lines, published Ray ports, KubeRay custom resources, and the
``RAY_AUTH_MODE`` setting.

The Ray head's dashboard (8265) serves the Jobs API, which runs any shell command it is sent;
the Ray client server (10001) runs any Python. Neither authenticated anything until Ray 2.52
added token authentication, which stays off unless ``RAY_AUTH_MODE=token`` is set on every
node (KubeRay 1.5+: ``spec.authOptions.mode: token``; ``enableK8sTokenAuth`` delegates it to
Kubernetes). ``ray start`` binds the dashboard to 127.0.0.1 unless ``--dashboard-host`` says
otherwise; KubeRay binds it to every pod interface.
"""

from __future__ import annotations

from collections.abc import Mapping

from bastion.exposure import rules
from bastion.exposure._commands import Command, EnvVar, Publish, is_false, is_true, last, options
from bastion.exposure._net import exposed, reach
from bastion.exposure._sink import Sink
from bastion.exposure._yaml import YMap, YSeq
from bastion.findings import Severity

DASHBOARD_PORT = "8265"
CLIENT_PORT = "10001"
GCS_PORT = "6379"
_RAY_PORTS = {DASHBOARD_PORT: "dashboard (Jobs API)", CLIENT_PORT: "client server",
              GCS_PORT: "GCS"}
_KUBERAY_KINDS = {"RayCluster": ("spec",), "RayJob": ("spec", "rayClusterSpec"),
                  "RayService": ("spec", "rayClusterConfig")}


def token_auth(env: Mapping[str, EnvVar]) -> bool:
    """Token authentication is on, or set from a variable or Secret Bastion cannot read (given
    the benefit of the doubt: only a literal ``disabled`` or its absence is reported)."""
    mode = env.get("RAY_AUTH_MODE")
    k8s = env.get("RAY_ENABLE_K8S_TOKEN_AUTH")
    if mode is not None:
        value = mode.value.strip().strip("'\"").lower()
        if value == "token" or value.startswith("$"):
            return True
    return k8s is not None and is_true(k8s.value)


def check_env(env: Mapping[str, EnvVar], sink: Sink) -> None:
    mode = env.get("RAY_AUTH_MODE")
    if mode is not None and mode.value.strip().strip("'\"").lower() == "disabled":
        sink.add(rules.RAY_TOKEN_AUTH_OFF, mode.line,
                 "RAY_AUTH_MODE=disabled turns Ray's token authentication off explicitly",
                 evidence=f"RAY_AUTH_MODE={mode.value}", severity=Severity.HIGH)


def _published(publish: tuple[Publish, ...], ports: set[str]) -> list[Publish]:
    return [p for p in publish
            if (p.container_port in ports or p.container_port == "*")
            and exposed(reach(p.host_ip))]


def check_command(cmd: Command, sink: Sink) -> None:
    """``ray start --head ...`` and the ports its container publishes."""
    if cmd.program != "ray" or cmd.argv[1:2] != ("start",):
        return
    if token_auth(cmd.env):
        return
    found = options(cmd.argv, flags=frozenset({"--head", "--block", "--verbose"}))
    if "--head" not in found:
        return
    exposed_on: list[str] = []
    # In a container, 0.0.0.0 is the container's own interface: only published ports (or the
    # host's network) reach it from outside. On a host or in a pod, it is the network itself.
    contained = bool(cmd.image) or cmd.where.startswith("compose service")
    if not is_false(last(found, "--include-dashboard")):
        host = last(found, "--dashboard-host")
        port = last(found, "--dashboard-port") or DASHBOARD_PORT
        if host is not None and exposed(reach(host)):
            published = [item.text for item in _published(cmd.publish, {port})]
            if published or not contained:
                exposed_on.append(f"the dashboard listens on {host}:{port}"
                                  + "".join(f"; published as {p}" for p in published))
    client_port = last(found, "--ray-client-server-port") or CLIENT_PORT
    for item in _published(cmd.publish, {client_port}):
        if item.container_port != "*":
            exposed_on.append(f"the client server port is published as {item.text}")
    if exposed_on:
        sink.add(rules.RAY_DASHBOARD_EXPOSED, cmd.line,
                 "; ".join(exposed_on) + ", and RAY_AUTH_MODE is not token: anyone who "
                 "reaches it can submit jobs", evidence=cmd.text)


def check_service_ports(ports: list[tuple[str, str, int]], service_type: str, auth: bool,
                        sink: Sink) -> None:
    """A Kubernetes Service (``LoadBalancer``/``NodePort``) that publishes Ray ports:
    ``(port number, port name, line)`` for each."""
    if auth:
        return
    for number, name, line in ports:
        what = _RAY_PORTS.get(number) or next(
            (label for key, label in (("dashboard", "dashboard (Jobs API)"),
                                      ("client", "client server")) if key in name), None)
        if what is not None:
            sink.add(rules.RAY_DASHBOARD_EXPOSED, line,
                     f"a {service_type} Service publishes the Ray {what} port "
                     f"({name or number}) and no Ray cluster in this file sets token "
                     "authentication", evidence=f"type: {service_type}, port {number} {name}")


def kuberay_cluster_spec(doc: YMap) -> YMap | None:
    path = _KUBERAY_KINDS.get(str(doc.get("kind")))
    if path is None or not str(doc.get("apiVersion", "")).startswith("ray.io/"):
        return None
    node: object = doc
    for key in path:
        node = node.get(key) if isinstance(node, YMap) else None
    return node if isinstance(node, YMap) else None


def kuberay_auth(spec: YMap) -> tuple[bool, bool, int]:
    """(token auth on, explicitly disabled, line to report) for a KubeRay cluster spec."""
    options_ = spec.get("authOptions")
    line = spec.line
    on = off = False
    if isinstance(options_, YMap):
        line = options_.line
        mode = str(options_.get("mode", "")).lower()
        on = mode == "token" or is_true(options_.get("enableK8sTokenAuth"))
        off = mode == "disabled"
    head = spec.get("headGroupSpec")
    for env in _container_envs(head):
        on = on or token_auth(env)
        mode_var = env.get("RAY_AUTH_MODE")
        if mode_var is not None and mode_var.value.lower() == "disabled":
            off = True
    return on, off and not on, line


def _container_envs(group: object) -> list[dict[str, EnvVar]]:
    from bastion.exposure.kubernetes import container_env

    envs: list[dict[str, EnvVar]] = []
    template = group.get("template") if isinstance(group, YMap) else None
    pod = template.get("spec") if isinstance(template, YMap) else None
    containers = pod.get("containers") if isinstance(pod, YMap) else None
    if isinstance(containers, YSeq):
        envs.extend(container_env(c) for c in containers if isinstance(c, YMap))
    return envs


def check_kuberay(doc: YMap, sink: Sink) -> bool:
    """Findings for a RayCluster/RayJob/RayService; returns whether token auth is on."""
    spec = kuberay_cluster_spec(doc)
    if spec is None:
        return False
    on, off, line = kuberay_auth(spec)
    if on:
        return True
    name = _name(doc)
    head = spec.get("headGroupSpec")
    service_type = str(head.get("serviceType", "")) if isinstance(head, YMap) else ""
    if service_type in ("LoadBalancer", "NodePort") and isinstance(head, YMap):
        sink.add(rules.RAY_DASHBOARD_EXPOSED, head.line_of("serviceType"),
                 f"{doc.get('kind')} {name}: the head Service is a {service_type}, so the "
                 "dashboard (Jobs API) and client ports are published, and token "
                 "authentication is not on", evidence=f"headGroupSpec.serviceType: "
                 f"{service_type}")
    else:
        sink.add(rules.RAY_TOKEN_AUTH_OFF, line,
                 f"{doc.get('kind')} {name}: token authentication is "
                 + ("disabled" if off else "not enabled (no authOptions.mode: token)")
                 + "; any pod that reaches the head can submit jobs",
                 evidence="authOptions.mode: disabled" if off else None,
                 severity=Severity.HIGH if off else None)
    return False


def _name(doc: YMap) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "?")) if isinstance(meta, YMap) else "?"
