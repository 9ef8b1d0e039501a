"""NVIDIA Triton Inference Server: the ``tritonserver`` command line.

Triton is configured only by flags. Every flag takes a value (``--name=value`` or ``--name
value``); restricted API groups are ``--http-restricted-api=<apis>:<key>=<value>`` for HTTP and
``--grpc-restricted-protocol=<protocols>:<key>=<value>`` for gRPC (the two spell it
differently). HTTP and gRPC are both on unless ``--allow-http=false``/``--allow-grpc=false``.
"""

from __future__ import annotations

from bastion.exposure import rules
from bastion.exposure._commands import Command, is_false, last, options
from bastion.exposure._net import Reach, reach
from bastion.exposure._sink import Sink

_HTTP_RESTRICT = ("--http-restricted-api",)
_GRPC_RESTRICT = ("--grpc-restricted-protocol", "--grpc-restricted-api")
_ADMIN_GROUPS = ("logging", "trace", "shared-memory")


def _restricted(found: dict[str, list[tuple[str, int]]], names: tuple[str, ...]) -> set[str]:
    """The API groups named in restricted-API flags (``a,b:key=value``)."""
    groups: set[str] = set()
    for name in names:
        for value, _index in found.get(name, ()):
            apis, sep, _rest = value.partition(":")
            if sep:
                groups.update(a.strip().lower() for a in apis.split(",") if a.strip())
    return groups


def check_command(cmd: Command, sink: Sink) -> None:
    if cmd.program != "tritonserver":
        return
    found = options(cmd.argv)
    protocols = []
    if not is_false(last(found, "--allow-http")):
        protocols.append(("HTTP", _restricted(found, _HTTP_RESTRICT), "--http-restricted-api"))
    if not is_false(last(found, "--allow-grpc")):
        protocols.append(("gRPC", _restricted(found, _GRPC_RESTRICT),
                          "--grpc-restricted-protocol"))

    mode = (last(found, "--model-control-mode") or "none").strip().strip("'\"").lower()
    if mode == "explicit":
        open_on = [name for name, groups, _ in protocols if "model-repository" not in groups]
        if open_on:
            sink.add(rules.TRITON_MODEL_CONTROL, cmd.line,
                     "--model-control-mode=explicit with the model repository API open on "
                     + " and ".join(open_on) + ": any client can load and unload models",
                     evidence=cmd.text)
    elif mode == "poll":
        sink.add(rules.TRITON_MODEL_POLLING, cmd.line,
                 "--model-control-mode=poll: every change written to the model repository is "
                 "loaded", evidence=cmd.text)

    open_groups = [f"{name}: {', '.join(missing)} (no {flag} covers them)"
                   for name, groups, flag in protocols
                   if (missing := [g for g in _ADMIN_GROUPS if g not in groups])]
    if open_groups:
        sink.add(rules.TRITON_ADMIN_API, cmd.line,
                 "API groups open to every client: " + "; ".join(open_groups),
                 evidence=cmd.text)

    if not is_false(last(found, "--allow-metrics")):
        address = last(found, "--metrics-address")
        if address is None or reach(address) in (Reach.ALL, Reach.OTHER):
            where = address if address is not None else "0.0.0.0 (the default)"
            port = last(found, "--metrics-port") or "8002"
            sink.add(rules.TRITON_METRICS_EXPOSED, cmd.line,
                     f"metrics are published on {where}:{port}", evidence=cmd.text)

    levels = [v.lower() for v, _ in found.get("--trace-level", ())]
    for value, _index in found.get("--trace-config", ()):
        key, _, setting = value.partition("=")
        if key.strip().lower() == "level" or key.strip().lower().endswith(",level"):
            levels.append(setting.lower())
    if any("tensors" in level for level in levels):
        sink.add(rules.TRITON_TRACE_TENSORS, cmd.line,
                 "tracing at level TENSORS writes request inputs and outputs to the trace file",
                 evidence=cmd.text)
