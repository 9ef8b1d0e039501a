"""TorchServe: ``config.properties``, the ``torchserve`` command line and ``TS_*`` variables.

TorchServe listens on three HTTP APIs: inference (8080), management (8081) and metrics (8082),
all on 127.0.0.1 by default. The management API registers models from URLs; before 0.11 it
had no authentication at all, which ShellTorch (CVE-2023-43654) exploited together with the
default ``allowed_urls`` (every URL). Since 0.11 token authorization is on and the model API
off by default, and both can be turned back with one setting each.
"""

from __future__ import annotations

from collections.abc import Mapping

from bastion.exposure import rules
from bastion.exposure._commands import Command, EnvVar, is_true
from bastion.exposure._net import exposed, url_reach
from bastion.exposure._properties import Entry
from bastion.exposure._sink import Sink
from bastion.findings import Severity

#: Keys that mark a ``.properties`` file as TorchServe's.
KEYS = frozenset({
    "inference_address", "management_address", "metrics_address", "model_store",
    "load_models", "allowed_urls", "enable_model_api", "disable_token_authorization",
    "grpc_inference_port", "grpc_management_port", "default_workers_per_model",
    "install_py_dep_per_model", "enable_envvars_config", "model_snapshot", "workflow_store",
    "cors_allowed_origin", "enable_metrics_api", "metrics_mode", "models",
})

_DEFAULT_ALLOWED = "file://.*|http(s)?://.*"
#: ``allowed_urls`` patterns that match any web URL.
_WIDE_PATTERNS = (".*", "http(s)?://.*", "https?://.*", "http://.*", "https://.*",
                  "(http|https)://.*", "http[s]?://.*", "file://.*|http(s)?://.*")


def check_properties(props: Mapping[str, Entry], sink: Sink) -> None:
    token = props.get("disable_token_authorization")
    token_off = token is not None and is_true(token.value)
    model_api = props.get("enable_model_api") or props.get("model_api_enabled")
    api_on = model_api is not None and is_true(model_api.value)
    if token is not None and token_off:
        sink.add(rules.TORCHSERVE_TOKEN_AUTH_DISABLED, token.line,
                 "token authorization is disabled: the inference and management APIs take "
                 "requests from anyone who reaches them",
                 evidence=f"disable_token_authorization={token.value}")
    if model_api is not None and api_on:
        sink.add(rules.TORCHSERVE_MODEL_API_ENABLED, model_api.line,
                 "the model API is enabled: callers can register model archives (handler "
                 "code) while TorchServe runs", evidence=f"enable_model_api={model_api.value}")

    management = props.get("management_address")
    mgmt_exposed = False
    if management is not None:
        kind, host = url_reach(management.value)
        if exposed(kind):
            mgmt_exposed = True
            worse = token_off or api_on
            why = ("token authorization is off" if token_off
                   else "the model API is on" if api_on
                   else "safe only on TorchServe 0.11+ with its token authorization")
            sink.add(rules.TORCHSERVE_MANAGEMENT_EXPOSED, management.line,
                     f"the management API listens on {host or 'every interface'} "
                     f"({kind.value}); {why}",
                     evidence=f"management_address={management.value}",
                     severity=Severity.CRITICAL if worse else None)

    inference = props.get("inference_address")
    if inference is not None and token_off:
        kind, host = url_reach(inference.value)
        if exposed(kind):
            sink.add(rules.TORCHSERVE_INFERENCE_EXPOSED, inference.line,
                     f"the inference API listens on {host or 'every interface'} with token "
                     "authorization disabled", evidence=f"inference_address={inference.value}")

    metrics = props.get("metrics_address")
    if metrics is not None:
        kind, host = url_reach(metrics.value)
        if exposed(kind):
            sink.add(rules.TORCHSERVE_METRICS_EXPOSED, metrics.line,
                     f"the metrics API listens on {host or 'every interface'} ({kind.value})",
                     evidence=f"metrics_address={metrics.value}")

    allowed = props.get("allowed_urls")
    if api_on or mgmt_exposed:
        value = allowed.value if allowed is not None else _DEFAULT_ALLOWED
        if _wide(value):
            where = ("is not set: the default allows every URL and the local file system"
                     if allowed is None else "allows every URL")
            sink.add(rules.TORCHSERVE_ALLOWED_URLS,
                     allowed.line if allowed is not None else (model_api or management or
                                                               _first(props)).line,
                     f"allowed_urls {where}, and models can be registered through the "
                     "management API", evidence=f"allowed_urls={value}")

    cors = props.get("cors_allowed_origin")
    if cors is not None and cors.value.strip().strip("'\"") == "*":
        sink.add(rules.TORCHSERVE_CORS_ANY, cors.line, "any web site may call the APIs from "
                 "a visitor's browser", evidence=f"cors_allowed_origin={cors.value}")

    deps = props.get("install_py_dep_per_model")
    if deps is not None and is_true(deps.value):
        sink.add(rules.TORCHSERVE_INSTALL_DEPS, deps.line, "each model archive's "
                 "requirements are pip-installed when it is registered",
                 evidence=f"install_py_dep_per_model={deps.value}")


def _first(props: Mapping[str, Entry]) -> Entry:
    return min(props.values(), key=lambda e: e.line)


def _wide(value: str) -> bool:
    for pattern in value.replace(",", "|").split("|"):
        cleaned = pattern.strip().strip("'\"")
        if cleaned in _WIDE_PATTERNS or cleaned in ("http(s)?://.*", ".*"):
            return True
        if cleaned.rstrip("/").endswith("://.*") and cleaned.startswith("http"):
            return True
    return False


def check_command(cmd: Command, sink: Sink) -> None:
    """``torchserve --start --disable-token-auth --enable-model-api ...``."""
    if cmd.program != "torchserve":
        return
    if "--disable-token-auth" in cmd.argv:
        sink.add(rules.TORCHSERVE_TOKEN_AUTH_DISABLED, cmd.line,
                 "torchserve is started with --disable-token-auth", evidence=cmd.text)
    if "--enable-model-api" in cmd.argv:
        sink.add(rules.TORCHSERVE_MODEL_API_ENABLED, cmd.line,
                 "torchserve is started with --enable-model-api", evidence=cmd.text)


def check_env(env: Mapping[str, EnvVar], sink: Sink) -> None:
    """``TS_*`` variables (honoured when ``enable_envvars_config=true``)."""
    token = env.get("TS_DISABLE_TOKEN_AUTHORIZATION")
    if token is not None and is_true(token.value):
        sink.add(rules.TORCHSERVE_TOKEN_AUTH_DISABLED, token.line,
                 "TS_DISABLE_TOKEN_AUTHORIZATION turns token authorization off",
                 evidence=f"TS_DISABLE_TOKEN_AUTHORIZATION={token.value}")
    api = env.get("TS_ENABLE_MODEL_API")
    if api is not None and is_true(api.value):
        sink.add(rules.TORCHSERVE_MODEL_API_ENABLED, api.line,
                 "TS_ENABLE_MODEL_API turns the model registration API on",
                 evidence=f"TS_ENABLE_MODEL_API={api.value}")
    management = env.get("TS_MANAGEMENT_ADDRESS")
    if management is not None:
        kind, host = url_reach(management.value)
        if exposed(kind):
            where = host or "every interface"
            sink.add(rules.TORCHSERVE_MANAGEMENT_EXPOSED, management.line,
                     f"TS_MANAGEMENT_ADDRESS binds the management API to {where} "
                     f"({kind.value})",
                     evidence=f"TS_MANAGEMENT_ADDRESS={management.value}")


__all__ = ["KEYS", "check_command", "check_env", "check_properties"]
