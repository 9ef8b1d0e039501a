"""MLflow: the basic-auth ``basic_auth.ini``, ``mlflow server``/``mlflow ui`` command lines and
``MLFLOW_AUTH_*`` variables.

``mlflow server`` binds 127.0.0.1 unless ``--host`` says otherwise and authenticates nothing
unless started with ``--app-name basic-auth`` (or another auth app). For years the basic-auth
app's ``basic_auth.ini`` shipped the admin password ``password1234``
(GHSA-gq3w-7jj3-x7gr); configurations copied from that file still carry it.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping

from bastion.exposure import rules
from bastion.exposure._commands import Command, EnvVar, last, options
from bastion.exposure._net import exposed, reach
from bastion.exposure._sink import Sink

LEGACY_ADMIN_PASSWORD = "password1234"  # noqa: S105 - the published default we look for
MAX_INI = 1 << 20


class IniError(ValueError):
    """Not an INI file Bastion will read."""


def check_ini(text: str, sink: Sink) -> None:
    """``[mlflow]`` section of a basic-auth configuration."""
    if len(text) > MAX_INI:
        raise IniError(f"{len(text)} characters is over the {MAX_INI} limit")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise IniError(" ".join(str(exc).split())[:300]) from None
    if not parser.has_section("mlflow"):
        return
    password = parser.get("mlflow", "admin_password", fallback=None)
    if password is not None and password.strip().strip("'\"") == LEGACY_ADMIN_PASSWORD:
        user = parser.get("mlflow", "admin_username", fallback="admin")
        sink.add(rules.MLFLOW_DEFAULT_ADMIN_PASSWORD, _line_of(text, "admin_password"),
                 f"the admin user {user!r} has the published default password",
                 evidence=f"admin_password = {password}")


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith(key) and stripped[len(key):].lstrip()[:1] in ("=", ":"):
            return number
    return None


def check_command(cmd: Command, sink: Sink) -> None:
    """``mlflow server|ui --host 0.0.0.0`` without an auth app."""
    if cmd.program != "mlflow" or cmd.argv[1:2] not in (("server",), ("ui",)):
        return
    found = options(cmd.argv[1:], flags=frozenset({
        "--serve-artifacts", "--no-serve-artifacts", "--artifacts-only", "--dev",
        "--disable-security-middleware", "--expose-prometheus", "--enable-workspaces"}))
    host = last(found, "--host", "-h")
    app = last(found, "--app-name")
    if host is not None and exposed(reach(host)) and app is None:
        sink.add(rules.MLFLOW_NO_AUTH, cmd.line,
                 f"mlflow {cmd.argv[1]} listens on {host} without --app-name basic-auth: the "
                 "REST API, artifacts and model registry are open to the network",
                 evidence=cmd.text)
    weak: list[str] = []
    if "--disable-security-middleware" in found:
        weak.append("--disable-security-middleware")
    for name in ("--cors-allowed-origins", "--allowed-hosts"):
        value = last(found, name)
        if value is not None and "*" in [v.strip() for v in value.split(",")]:
            weak.append(f"{name} '*'")
    if weak:
        sink.add(rules.MLFLOW_SECURITY_MIDDLEWARE, cmd.line,
                 "MLflow's host and origin checks are off: " + ", ".join(weak),
                 evidence=cmd.text)


def check_env(env: Mapping[str, EnvVar], sink: Sink) -> None:
    password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    if password is not None and password.value.strip().strip("'\"") == LEGACY_ADMIN_PASSWORD:
        sink.add(rules.MLFLOW_DEFAULT_ADMIN_PASSWORD, password.line,
                 "MLFLOW_AUTH_ADMIN_PASSWORD is the published default password",
                 evidence=f"MLFLOW_AUTH_ADMIN_PASSWORD={password.value}")
