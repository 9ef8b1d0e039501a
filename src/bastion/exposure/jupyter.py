"""Jupyter Server / Notebook: ``jupyter_server_config.py`` (read with :mod:`ast`), its JSON
twin, and ``--ServerApp.token=`` style command-line options.

Jupyter authenticates with a token it generates at start-up, or a password. Setting the token
to the empty string with no password disables authentication entirely, and every kernel runs
arbitrary code. The same options live under ``ServerApp`` (Jupyter Server), ``NotebookApp``
(classic Notebook < 7) and, since Jupyter Server 2, ``IdentityProvider`` (token) and
``PasswordIdentityProvider`` (hashed password).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.exposure import rules
from bastion.exposure._commands import Command, is_true
from bastion.exposure._net import Reach, reach
from bastion.exposure._pyconfig import UNKNOWN, Setting
from bastion.exposure._sink import Sink
from bastion.exposure._yaml import YamlError, YMap, load_documents
from bastion.findings import Severity

SECTIONS = frozenset({"ServerApp", "NotebookApp", "IdentityProvider",
                      "PasswordIdentityProvider", "LabApp", "LabServerApp"})
OPTIONS = frozenset({"token", "password", "hashed_password", "ip", "allow_origin",
                     "allow_origin_pat", "disable_check_xsrf", "allow_remote_access"})
_ANY_PATTERNS = frozenset({".*", ".*?", "^.*$", "(.*)", ".+", "^.+$", "*"})
_PROGRAMS = frozenset({"jupyter-notebook", "jupyter-lab", "jupyter-server", "jupyter-nbclassic",
                       "start-notebook.sh", "start-notebook.py", "start-singleuser.sh",
                       "start-singleuser.py", "jupyterlab", "jupyter_server", "notebook"})
_SUBCOMMANDS = frozenset({"notebook", "lab", "server", "nbclassic"})


@dataclass(frozen=True, slots=True)
class Item:
    value: Any
    line: int | None
    evidence: str


def settings_from_python(config: Mapping[tuple[str, str], Setting]) -> dict[str, Item]:
    out: dict[str, Item] = {}
    for (section, option), setting in sorted(config.items(), key=lambda kv: kv[1].line):
        if section in SECTIONS and option in OPTIONS:
            out[option] = Item(setting.value, setting.line, setting.source)
    return out


def settings_from_json(text: str) -> dict[str, Item]:
    """``{"ServerApp": {"token": ""}}``; lines when the JSON reads as YAML too."""
    try:
        docs = load_documents(text)
        data: Any = docs[0] if docs else None
    except YamlError:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
    out: dict[str, Item] = {}
    if not isinstance(data, dict):
        return out
    for section, body in data.items():
        if section not in SECTIONS or not isinstance(body, dict):
            continue
        for option, value in body.items():
            if option in OPTIONS:
                line = body.line_of(option) if isinstance(body, YMap) else None
                out[option] = Item(value, line,
                                   f'"{section}": {{"{option}": {json.dumps(value)}}}')
    return out


def is_jupyter(cmd: Command) -> bool:
    program = cmd.program
    return program in _PROGRAMS or (program == "jupyter" and cmd.argv[1:2] != ()
                                    and cmd.argv[1] in _SUBCOMMANDS)


def settings_from_command(cmd: Command) -> dict[str, Item]:
    out: dict[str, Item] = {}
    args = list(cmd.argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("--"):
            continue
        name, eq, value = arg[2:].partition("=")
        option = name.rsplit(".", 1)[-1]
        section = name.rsplit(".", 1)[0] if "." in name else ""
        if option not in OPTIONS or (section and section not in SECTIONS):
            if name in ("disable-check-xsrf",):
                out["disable_check_xsrf"] = Item(True, cmd.line, cmd.text)
            continue
        if not eq:  # --ServerApp.ip 0.0.0.0
            if i < len(args) and not args[i].startswith("--"):
                value = args[i]
                i += 1
            elif option == "disable_check_xsrf":
                value = "True"
        out[option] = Item(_command_value(option, value), cmd.line, cmd.text)
    return out


def _command_value(option: str, value: str) -> Any:
    if option in ("disable_check_xsrf", "allow_remote_access"):
        return is_true(value)
    return value.strip().strip("'\"")


def check(settings: Mapping[str, Item], sink: Sink, where: str) -> None:
    """Findings for one server's settings (a config file, or one command line)."""
    token = settings.get("token")
    password_set = any(_set(settings.get(k)) for k in ("password", "hashed_password"))
    ip = settings.get("ip")
    kind = reach(str(ip.value)) if ip is not None and isinstance(ip.value, str) else None
    remote = settings.get("allow_remote_access")
    wide = kind in (Reach.ALL, Reach.OTHER) or (remote is not None and is_true(remote.value))

    if token is not None and token.value == "" and not password_set:
        listen = f"; it listens on {ip.value!r}" if ip is not None and wide else ""
        sink.add(rules.JUPYTER_NO_AUTH, token.line,
                 f"{where}: the token is empty and no password is set: authentication is "
                 f"disabled{listen}", evidence=token.evidence,
                 severity=Severity.CRITICAL if wide else None)
    origin = settings.get("allow_origin")
    pattern = settings.get("allow_origin_pat")
    if origin is not None and str(origin.value).strip() == "*":
        sink.add(rules.JUPYTER_ANY_ORIGIN, origin.line,
                 f"{where}: allow_origin='*' accepts API calls from any web site",
                 evidence=origin.evidence)
    elif pattern is not None and str(pattern.value).strip() in _ANY_PATTERNS:
        sink.add(rules.JUPYTER_ANY_ORIGIN, pattern.line,
                 f"{where}: allow_origin_pat {pattern.value!r} matches every origin",
                 evidence=pattern.evidence)
    xsrf = settings.get("disable_check_xsrf")
    if xsrf is not None and is_true(xsrf.value):
        sink.add(rules.JUPYTER_XSRF_DISABLED, xsrf.line,
                 f"{where}: the XSRF check is disabled", evidence=xsrf.evidence)
    if ip is not None and kind in (Reach.ALL, Reach.OTHER):
        sink.add(rules.JUPYTER_BIND_ALL, ip.line,
                 f"{where}: the server listens on {ip.value!r} ({kind.value})",
                 evidence=ip.evidence)


def _set(item: Item | None) -> bool:
    """A password or hash that is present and not empty (a computed one counts as set)."""
    if item is None:
        return False
    return item.value is UNKNOWN or bool(item.value)


def check_commands(commands: Iterable[Command], sink: Sink) -> None:
    for cmd in commands:
        if is_jupyter(cmd):
            check(settings_from_command(cmd), sink, f"{cmd.program} command line")
