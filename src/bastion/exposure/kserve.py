"""KServe InferenceServices protected by Istio policies that nothing enforces.

KServe's documented way to authenticate inference is Istio: a ``RequestAuthentication`` (JWT)
and an ``AuthorizationPolicy`` in the InferenceService's namespace. Istio enforces both in the
Envoy sidecar of the destination pod. When sidecar injection is off for the InferenceService
(``sidecar.istio.io/inject: "false"`` as annotation or label) or its namespace
(``istio-injection: disabled``), the policies exist, ``kubectl get`` shows them, and they do
nothing (kserve/kserve discussion #3103 is one user finding out).

A manifest set is usually a folder (kustomize, Helm output), so the InferenceService, the
Namespace and the policy can be in different files: the policy's file is read together with
the YAML files beside it (bounded), and the finding is reported once, on the policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.exposure import rules
from bastion.exposure._sink import Sink
from bastion.exposure._yaml import YMap

POLICY_KINDS = frozenset({"AuthorizationPolicy", "RequestAuthentication"})
_INJECT = "sidecar.istio.io/inject"
_ROOT_NAMESPACE = "istio-system"  # Istio's default root namespace: its policies are mesh-wide


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str | None
    labels: dict[str, str]
    disabled_by: str | None  # why injection is off, or None
    source: str


@dataclass(frozen=True)
class Policy:
    kind: str
    name: str
    namespace: str | None
    selector: dict[str, str] | None
    line: int


def _meta(doc: YMap) -> YMap:
    meta = doc.get("metadata")
    return meta if isinstance(meta, YMap) else YMap()


def _strings(node: object) -> dict[str, str]:
    if not isinstance(node, dict):
        return {}
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in node.items()}


def _off(value: str | None) -> bool:
    return value is not None and value.strip().strip("'\"").lower() == "false"


def namespaces_without_injection(docs: list[tuple[YMap, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for doc, source in docs:
        if doc.get("kind") != "Namespace":
            continue
        meta = _meta(doc)
        labels = _strings(meta.get("labels"))
        name = str(meta.get("name", ""))
        if labels.get("istio-injection", "").lower() == "disabled":
            out[name] = f"namespace {name} has istio-injection: disabled ({source})"
        elif _off(labels.get(_INJECT)):
            out[name] = f"namespace {name} has {_INJECT}: false ({source})"
    return out


def inference_services(docs: list[tuple[YMap, str]]) -> list[Service]:
    namespaces = namespaces_without_injection(docs)
    out: list[Service] = []
    for doc, source in docs:
        if doc.get("kind") != "InferenceService" or not str(doc.get("apiVersion", "")).startswith(
                "serving.kserve.io/"):
            continue
        meta = _meta(doc)
        name = str(meta.get("name", "?"))
        namespace = meta.get("namespace")
        ns = str(namespace) if namespace is not None else None
        annotations = _strings(meta.get("annotations"))
        labels = _strings(meta.get("labels"))
        predictor = doc.get("spec", {}).get("predictor") if isinstance(doc.get("spec"),
                                                                      YMap) else None
        if isinstance(predictor, YMap):
            annotations.update(_strings(predictor.get("annotations")))
            labels.update(_strings(predictor.get("labels")))
        reason: str | None = None
        if _off(annotations.get(_INJECT)):
            reason = f'InferenceService {name} has the annotation {_INJECT}: "false"'
        elif _off(labels.get(_INJECT)):
            reason = f'InferenceService {name} has the label {_INJECT}: "false"'
        elif ns is not None and ns in namespaces:
            reason = namespaces[ns]
        out.append(Service(name, ns, labels, reason, source))
    return out


def policies(docs: list[YMap]) -> list[Policy]:
    out: list[Policy] = []
    for doc in docs:
        kind = str(doc.get("kind", ""))
        if kind not in POLICY_KINDS or not str(doc.get("apiVersion", "")).startswith(
                "security.istio.io/"):
            continue
        meta = _meta(doc)
        namespace = meta.get("namespace")
        spec = doc.get("spec")
        selector = None
        if isinstance(spec, YMap) and isinstance(spec.get("selector"), YMap):
            selector = _strings(spec["selector"].get("matchLabels"))
        out.append(Policy(kind, str(meta.get("name", "?")),
                          str(namespace) if namespace is not None else None, selector,
                          doc.line))
    return out


def _selects(policy: Policy, service: Service) -> bool:
    if policy.namespace != _ROOT_NAMESPACE and policy.namespace != service.namespace:
        return False
    if not policy.selector:
        return True
    pod_labels = {**service.labels, "serving.kserve.io/inferenceservice": service.name,
                  "component": "predictor"}
    for key, value in policy.selector.items():
        if key == "app" and value.startswith(service.name):
            continue
        if pod_labels.get(key) != value:
            return False
    return True


def check(local: list[YMap], all_docs: list[tuple[YMap, str]], sink: Sink) -> None:
    """Policies in ``local`` (this file) against InferenceServices and Namespaces in
    ``all_docs`` (this file and its neighbours, each with the file it came from)."""
    services = [s for s in inference_services(all_docs) if s.disabled_by is not None]
    if not services:
        return
    for policy in policies(local):
        for service in services:
            if _selects(policy, service):
                sink.add(rules.KSERVE_POLICY_NOT_ENFORCED, policy.line,
                         f"{policy.kind} {policy.name} applies to InferenceService "
                         f"{service.name}, but {service.disabled_by}: no sidecar enforces it",
                         evidence=f"{policy.kind} {policy.name} (namespace "
                         f"{policy.namespace or 'unset'})", inference_service=service.name)
