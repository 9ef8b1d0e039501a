"""Kubernetes manifests: the pods that serve models, what they mount and who they run as, and
Services that publish management ports.

Workloads (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob), KServe
InferenceServices and ServingRuntimes, KubeRay clusters and Kubeflow Notebooks are read for
their pod specs. A container *serves models* when its image or command is a known model
server (Triton, TorchServe, TF Serving, KServe, vLLM, TGI, Ray, MLflow...) or it is part of an
InferenceService predictor. For those, a model store mounted writable, root, privileged mode
and privilege escalation are findings; every container's command goes to the platform checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bastion.exposure import rules
from bastion.exposure._commands import Command, EnvVar, argv_of, clip_text, unwrap
from bastion.exposure._sink import Sink
from bastion.exposure._yaml import YMap, YSeq
from bastion.findings import Severity

_WORKLOADS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Notebook": ("spec", "template", "spec"),  # Kubeflow
    "ServingRuntime": ("spec",),  # KServe
    "ClusterServingRuntime": ("spec",),
}
#: InferenceService components and the framework keys that are containers inside them.
_ISVC_COMPONENTS = ("predictor", "transformer", "explainer")
_FRAMEWORKS = ("model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
               "lightgbm", "paddle", "pmml", "huggingface", "alibi", "art")
_SERVING_IMAGE = re.compile(
    r"tritonserver|torchserve|tensorflow/serving|tensorflow-serving|kserve|seldon|mlserver|"
    r"vllm|text-generation-inference|sglang|llama\.cpp|llama-server|ollama|bentoml|"
    r"rayproject/ray|ray-ml|mlflow|openvino/model_server|model[-_]server|modelmesh",
    re.IGNORECASE)
_SERVING_PROGRAMS = frozenset({
    "tritonserver", "torchserve", "tensorflow_model_server", "vllm", "text-generation-launcher",
    "mlserver", "bentoml", "ollama", "llama-server", "sglang",
})
_STORE_SOURCES = ("persistentVolumeClaim", "hostPath", "nfs", "csi", "cephfs", "glusterfs",
                  "azureFile", "azureDisk", "awsElasticBlockStore", "gcePersistentDisk",
                  "iscsi", "rbd", "cinder", "fc", "flexVolume", "portworxVolume")
_MODEL_PATH = re.compile(r"model|repositor|weights|checkpoint|ckpt|\.mar\b|mar[-_]?store",
                         re.IGNORECASE)


@dataclass
class PodRef:
    """One pod template and the containers in it."""

    owner: str  # "Deployment triton"
    pod: YMap
    containers: list[YMap]
    serving_all: bool = False  # an InferenceService component: every container serves
    commands: dict[int, list[Command]] = field(default_factory=dict)  # by container index


def _get(node: object, *path: str) -> object:
    for key in path:
        node = node.get(key) if isinstance(node, YMap) else None
    return node


def _name(doc: YMap) -> str:
    return str(_get(doc, "metadata", "name") or "?")


def pods(doc: YMap) -> Iterator[PodRef]:
    kind = str(doc.get("kind", ""))
    owner = f"{kind} {_name(doc)}"
    path = _WORKLOADS.get(kind)
    if path is not None:
        pod = _get(doc, *path)
        if isinstance(pod, YMap):
            yield PodRef(owner, pod, _containers(pod))
        return
    if kind == "InferenceService":
        for component in _ISVC_COMPONENTS:
            spec = _get(doc, "spec", component)
            if isinstance(spec, YMap):
                containers = _containers(spec)
                for framework in _FRAMEWORKS:  # a framework spec is the predictor's container
                    if isinstance(spec.get(framework), YMap):
                        container = spec[framework]
                        if "name" not in container:
                            container.setdefault("name", framework)
                        containers.append(container)
                yield PodRef(f"{owner} ({component})", spec, containers, serving_all=True)
        return
    from bastion.exposure.ray import kuberay_cluster_spec

    cluster = kuberay_cluster_spec(doc)
    if cluster is not None:
        groups: list[object] = [cluster.get("headGroupSpec")]
        workers = cluster.get("workerGroupSpecs")
        if isinstance(workers, YSeq):
            groups.extend(workers)
        for group in groups:
            pod = _get(group, "template", "spec")
            if isinstance(pod, YMap):
                yield PodRef(owner, pod, _containers(pod), serving_all=True)


def _containers(pod: YMap) -> list[YMap]:
    out: list[YMap] = []
    for key in ("containers", "initContainers"):
        items = pod.get(key)
        if isinstance(items, YSeq):
            out.extend(c for c in items if isinstance(c, YMap))
    return out


def container_env(container: YMap) -> dict[str, EnvVar]:
    env: dict[str, EnvVar] = {}
    items = container.get("env")
    if isinstance(items, YSeq):
        for item in items:
            if isinstance(item, YMap) and isinstance(item.get("name"), str):
                value = item.get("value")
                if value is None and "valueFrom" in item:
                    value = "$(valueFrom)"  # from a Secret or ConfigMap: not known here
                env[item["name"]] = EnvVar("" if value is None else str(value),
                                           item.line_of("value") if "value" in item
                                           else item.line)
    return env


def container_commands(container: YMap, owner: str) -> list[Command]:
    """``command`` + ``args`` of a container (unwrapping ``sh -c`` and friends)."""
    command = argv_of(container.get("command")) or []
    args = argv_of(container.get("args")) or []
    argv = [*command, *args]
    if not argv:
        return []
    node = container.get("command") if command else container.get("args")
    line = node.line if isinstance(node, YSeq) else (
        container.line_of("command") if command else container.line_of("args"))
    env = container_env(container)
    name = container.get("name", "?")
    found = unwrap(argv, line, clip_text(" ".join(argv)), dict(env))
    return [Command(c.argv, c.line, c.text, c.env, where=f"{owner}, container {name}")
            for c in found]


def is_serving(container: YMap, commands: list[Command]) -> bool:
    image = container.get("image")
    if isinstance(image, str) and _SERVING_IMAGE.search(image):
        return True
    for cmd in commands:
        if cmd.program in _SERVING_PROGRAMS:
            return True
        if cmd.program in ("ray",) or (cmd.program == "mlflow" and cmd.argv[1:2] in (
                ("server",), ("models",))):
            return True
    return False


def check_pod(ref: PodRef, sink: Sink) -> None:
    volumes = _volumes(ref.pod)
    pod_sc = ref.pod.get("securityContext")
    for index, container in enumerate(ref.containers):
        commands = ref.commands.get(index, [])
        if not (ref.serving_all or is_serving(container, commands)):
            continue
        name = f"{ref.owner}, container {container.get('name', '?')}"
        arguments = " ".join(" ".join(c.argv) for c in commands)
        _check_mounts(container, volumes, arguments, name, sink)
        _check_security(container, pod_sc, name, sink)


def _volumes(pod: YMap) -> dict[str, tuple[str, YMap]]:
    """Volume name -> (source kind, volume) for the volumes that can hold a model store."""
    out: dict[str, tuple[str, YMap]] = {}
    items = pod.get("volumes")
    if isinstance(items, YSeq):
        for volume in items:
            if not isinstance(volume, YMap) or not isinstance(volume.get("name"), str):
                continue
            for source in _STORE_SOURCES:
                if isinstance(volume.get(source), YMap):
                    out[volume["name"]] = (source, volume)
    return out


def _check_mounts(container: YMap, volumes: dict[str, tuple[str, YMap]], arguments: str,
                  name: str, sink: Sink) -> None:
    mounts = container.get("volumeMounts")
    if not isinstance(mounts, YSeq):
        return
    for mount in mounts:
        if not isinstance(mount, YMap):
            continue
        volume = volumes.get(str(mount.get("name")))
        if volume is None or mount.get("readOnly") is True:
            continue
        source, spec = volume
        source_spec = spec.get(source)
        if isinstance(source_spec, YMap) and source_spec.get("readOnly") is True:
            continue
        path = str(mount.get("mountPath", ""))
        claim = str(_get(spec, source, "claimName") or _get(spec, source, "path") or "")
        looks_like_store = any(_MODEL_PATH.search(text) for text in (
            path, str(mount.get("name", "")), claim)) or (path and path in arguments)
        if not looks_like_store:
            continue
        sink.add(rules.SERVING_MODEL_STORE_WRITABLE, mount.line,
                 f"{name}: the {source} volume {mount.get('name')!r} is mounted writable at "
                 f"{path}", evidence=f"mountPath: {path} (no readOnly: true)")


def _check_security(container: YMap, pod_sc: object, name: str, sink: Sink) -> None:
    sc = container.get("securityContext")

    def setting(key: str) -> tuple[object, int]:
        if isinstance(sc, YMap) and key in sc:
            return sc[key], sc.line_of(key)
        if isinstance(pod_sc, YMap) and key in pod_sc:
            return pod_sc[key], pod_sc.line_of(key)
        return None, container.line

    user, user_line = setting("runAsUser")
    non_root, non_root_line = setting("runAsNonRoot")
    if user == 0:
        sink.add(rules.SERVING_RUNS_AS_ROOT, user_line, f"{name}: runAsUser is 0 (root)",
                 evidence="runAsUser: 0")
    elif non_root is False:
        sink.add(rules.SERVING_RUNS_AS_ROOT, non_root_line,
                 f"{name}: runAsNonRoot is false", evidence="runAsNonRoot: false")
    elif non_root is not True and user is None:
        sink.add(rules.SERVING_RUNS_AS_ROOT, container.line,
                 f"{name}: neither runAsNonRoot nor runAsUser is set, so the image decides "
                 "(many serving images run as root)", severity=Severity.LOW)
    privileged, line = setting("privileged")
    if privileged is True:
        sink.add(rules.SERVING_PRIVILEGED, line, f"{name}: privileged: true",
                 evidence="privileged: true")
    escalation, line = setting("allowPrivilegeEscalation")
    if escalation is True:
        sink.add(rules.SERVING_PRIVILEGE_ESCALATION, line,
                 f"{name}: allowPrivilegeEscalation: true",
                 evidence="allowPrivilegeEscalation: true")


# -- compose and docker run ---------------------------------------------------------------------

def check_container_command(cmd: Command, sink: Sink) -> None:
    """A ``docker run`` or compose service that serves models: mounts, user, privileged."""
    serving = (cmd.program in _SERVING_PROGRAMS or bool(_SERVING_IMAGE.search(cmd.image))
               or cmd.program in ("ray",) or (cmd.program == "mlflow"
                                              and cmd.argv[1:2] in (("server",), ("models",))))
    if not serving or not (cmd.mounts or cmd.user is not None or cmd.privileged):
        return
    where = cmd.where or "container"
    arguments = " ".join(cmd.argv)
    for mount in cmd.mounts:
        if mount.read_only or not mount.source:
            continue
        if _MODEL_PATH.search(mount.target) or _MODEL_PATH.search(mount.source) or (
                mount.target and mount.target in arguments):
            sink.add(rules.SERVING_MODEL_STORE_WRITABLE, mount.line,
                     f"{where}: {mount.source} is mounted writable at {mount.target}",
                     evidence=mount.text)
    if cmd.user is not None and cmd.user.split(":")[0].strip() in ("0", "root"):
        sink.add(rules.SERVING_RUNS_AS_ROOT, cmd.line, f"{where}: runs as user {cmd.user}",
                 evidence=f"user: {cmd.user}")
    if cmd.privileged:
        sink.add(rules.SERVING_PRIVILEGED, cmd.line, f"{where}: runs privileged",
                 evidence="privileged: true")


# -- Services -----------------------------------------------------------------------------------

def service_ports(doc: YMap) -> tuple[str, list[tuple[str, str, int]]] | None:
    """(type, [(port, name, line)]) of a LoadBalancer or NodePort Service."""
    if doc.get("kind") != "Service":
        return None
    spec = doc.get("spec")
    if not isinstance(spec, YMap):
        return None
    kind = str(spec.get("type", "ClusterIP"))
    if kind not in ("LoadBalancer", "NodePort"):
        return None
    out: list[tuple[str, str, int]] = []
    ports = spec.get("ports")
    if isinstance(ports, YSeq):
        for port in ports:
            if isinstance(port, YMap):
                names = " ".join(str(port.get(k, "")) for k in ("name", "targetPort"))
                for number in {str(port.get("port", "")), str(port.get("targetPort", ""))}:
                    out.append((number, names.lower(), port.line))
    return kind, out


def check_torchserve_service(doc: YMap, sink: Sink) -> None:
    found = service_ports(doc)
    if found is None:
        return
    kind, ports = found
    for number, names, line in ports:
        if number == "8081" or "management" in names or "mgmt" in names:
            sink.add(rules.TORCHSERVE_MANAGEMENT_EXPOSED, line,
                     f"Service {_name(doc)}: a {kind} publishes the TorchServe management API "
                     f"port ({names.strip() or number})",
                     evidence=f"type: {kind}, port {number} {names.strip()}",
                     severity=Severity.CRITICAL)
            return


__all__ = ["PodRef", "check_container_command", "check_pod", "check_torchserve_service",
           "container_commands", "container_env", "is_serving", "pods", "service_ports"]
