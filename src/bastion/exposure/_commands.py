"""Server launch commands found in shell scripts, Dockerfiles, compose files and manifests.

ML servers are mostly configured by their command line (``tritonserver
--model-control-mode=explicit``, ``ray start --head --dashboard-host=0.0.0.0``, ``mlflow server
--host 0.0.0.0``), and the same command appears in many wrappers: a shell script, a
Dockerfile ``CMD``, a compose ``command:``, a Kubernetes ``args:`` list, a ``docker run`` line,
``sh -c "..."``. This module turns each of those into one :class:`Command`: the program's own
argument vector, the environment it sees, and (for containers) the ports it publishes, the
volumes it mounts and the user it runs as. The platform modules then read commands only.

Parsing is :mod:`shlex`, never a shell: nothing is expanded or run. Every input is bounded
(text size, tokens, commands, nesting of ``sh -c``).
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace

#: Longest script read.
MAX_SCRIPT = 1 << 20
#: Tokens kept from one command.
MAX_TOKENS = 4096
#: Commands taken from one file.
MAX_COMMANDS = 5000
#: ``sh -c "bash -c '...'"`` nesting followed.
MAX_NESTING = 4


@dataclass(frozen=True, slots=True)
class EnvVar:
    value: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Publish:
    """A container port published on the host (``-p 8265:8265``, compose ``ports:``)."""

    host_ip: str  # "" when not given: every interface of the host
    host_port: str
    container_port: str
    line: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path or volume mounted into a container."""

    source: str
    target: str
    read_only: bool
    line: int | None
    text: str


@dataclass(frozen=True)
class Command:
    """One program launch and what it runs with."""

    argv: tuple[str, ...]
    line: int | None
    text: str
    env: Mapping[str, EnvVar] = field(default_factory=dict)
    publish: tuple[Publish, ...] = ()
    mounts: tuple[Mount, ...] = ()
    image: str = ""
    user: str | None = None
    privileged: bool = False
    where: str = ""  # "service mlflow", "container triton", ... for messages

    @property
    def program(self) -> str:
        return posixpath.basename(self.argv[0]) if self.argv else ""

    def env_value(self, name: str) -> str | None:
        var = self.env.get(name)
        return var.value if var is not None else None


def clip_text(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


# -- shell --------------------------------------------------------------------------------------

_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "&;"})
_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with backslash continuations joined, heredoc bodies left out; (line, text)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index
        parts = [lines[index]]
        index += 1
        while parts[-1].endswith("\\") and index < len(lines):
            parts[-1] = parts[-1][:-1]
            parts.append(lines[index])
            index += 1
        joined = " ".join(parts)
        heredoc = _HEREDOC.search(joined)
        if heredoc:  # the body is data (often a config file), not commands
            end = heredoc.group(2)
            while index < len(lines) and lines[index].strip() != end:
                index += 1
            index += 1
        yield start + 1, joined


@dataclass(frozen=True, slots=True)
class Heredoc:
    """A file written by ``cat > NAME <<EOF ... EOF`` in a script: often a server's config."""

    target: str  # the file name redirected to ("" when none)
    first_line: int  # line of the body's first line
    body: str


_REDIRECT_TARGET = re.compile(r">>?\s*['\"]?([^\s'\";&|<>]+)")


def heredocs(text: str) -> list[Heredoc]:
    """Every heredoc of a script (or Dockerfile ``RUN``) with the file it is written to."""
    if len(text) > MAX_SCRIPT:
        return []
    found: list[Heredoc] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines) and len(found) < MAX_COMMANDS:
        line = lines[index]
        index += 1
        match = _HEREDOC.search(line)
        if not match:
            continue
        end = match.group(2)
        start = index
        while index < len(lines) and lines[index].strip() != end:
            index += 1
        redirect = _REDIRECT_TARGET.search(line[match.end():]) or _REDIRECT_TARGET.search(
            line[:match.start()])
        words = line.split()
        name = redirect.group(1) if redirect else (  # Dockerfile: COPY <<EOF /path/file
            words[-1] if words and words[0].upper() in ("COPY", "ADD") else "")
        found.append(Heredoc(name, start + 1, "\n".join(lines[start:index])))
        index += 1
    return found


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: list[str] = []
    try:
        for token in lexer:
            out.append(token)
            if len(out) > MAX_TOKENS:
                break
    except ValueError:  # an unclosed quote: fall back to plain words
        return line.split()[:MAX_TOKENS]
    return out


def _simple_commands(tokens: list[str]) -> Iterator[list[str]]:
    """Split a token list at ``;``, ``&&``, ``|``...; drop redirections."""
    current: list[str] = []
    skip_next = False
    for i, token in enumerate(tokens):
        if skip_next:
            skip_next = False
            continue
        if token in _SEPARATORS:
            if current:
                yield current
            current = []
            continue
        if token and set(token) <= set("<>&"):
            skip_next = True  # the redirection target
            continue
        if token.isdigit() and i + 1 < len(tokens) and tokens[i + 1][:1] in "<>":
            continue  # "2" of "2>&1"
        current.append(token)
    if current:
        yield current


def shell_commands(script: str, first_line: int | None, env: dict[str, EnvVar],
                   *, depth: int = 0, single_line: bool = False) -> list[Command]:
    """Every command of a shell script. ``export``/assignments update ``env`` as they go.

    ``single_line`` puts every command on ``first_line`` (a script inside a YAML string).
    """
    commands: list[Command] = []
    if len(script) > MAX_SCRIPT or depth > MAX_NESTING:
        return commands
    for offset, text in logical_lines(script):
        line = first_line if single_line or first_line is None else first_line + offset - 1
        for argv in _simple_commands(_tokens(text)):
            commands.extend(unwrap(argv, line, clip_text(text), env, depth=depth))
            if len(commands) >= MAX_COMMANDS:
                return commands
    return commands


_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS_PLAIN = frozenset({"exec", "nohup", "time", "command", "setsid", "dumb-init",
                             "builtin", "nice", "stdbuf", "xargs"})
_RUNNERS = {("uv", "run"), ("poetry", "run"), ("pipenv", "run"), ("pdm", "run"),
            ("hatch", "run"), ("rye", "run"), ("pixi", "run")}
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_PYTHON_MODULES = {"jupyter_server": "jupyter-server", "jupyterlab": "jupyter-lab",
                   "notebook": "jupyter-notebook", "jupyter": "jupyter", "mlflow": "mlflow",
                   "ray.scripts.scripts": "ray"}
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh"})
_CONTAINER_TOOLS = frozenset({"docker", "podman", "nerdctl"})


def unwrap(argv: list[str], line: int | None, text: str, env: dict[str, EnvVar], *,
           depth: int = 0, base: Command | None = None) -> list[Command]:
    """The real program(s) behind wrappers: env assignments, ``exec``, ``sudo``, ``env``,
    ``python -m``, ``uv run``, ``sh -c``, ``docker run`` (whose options become the
    command's ports, mounts, user and environment)."""
    inline: dict[str, EnvVar] = {}
    args = list(argv)
    for _ in range(16):  # wrappers of wrappers, bounded
        if not args:
            return []
        head = posixpath.basename(args[0])
        if _ASSIGNMENT.match(args[0]):
            name, _, value = args[0].partition("=")
            inline[name] = EnvVar(value, line)
            args = args[1:]
            if not args:  # a bare assignment sets the shell's variable
                env.update(inline)
                return []
        elif head in ("export", "declare", "typeset", "readonly"):
            for item in args[1:]:
                if _ASSIGNMENT.match(item):
                    name, _, value = item.partition("=")
                    env[name] = EnvVar(value, line)
            return []
        elif head in _WRAPPERS_PLAIN:
            args = _drop_options(args[1:])
        elif head == "env":
            args = _drop_options(args[1:], takes_value=("-u", "--unset", "-C", "--chdir"))
        elif head in ("sudo", "doas"):
            args = _drop_options(args[1:], takes_value=("-u", "-g", "-U", "-C", "-h", "-p"))
        elif head == "timeout":
            rest = _drop_options(args[1:], takes_value=("-s", "--signal", "-k"))
            args = rest[1:]
        elif head == "tini":
            args = _drop_options(args[1:])
        elif head in ("gosu", "su-exec"):
            args = args[2:]
        elif (head, args[1] if len(args) > 1 else "") in _RUNNERS:
            args = _drop_options(args[2:])
        elif head in ("conda", "mamba", "micromamba") and args[1:2] == ["run"]:
            args = _drop_options(args[2:], takes_value=("-n", "--name", "-p", "--prefix"))
        elif _PYTHON.match(head) and len(args) > 2 and args[1] == "-m":
            module = args[2]
            args = [_PYTHON_MODULES.get(module, module), *args[3:]]
        elif head in _SHELLS and _has_c_flag(args[1:]):
            script = _script_argument(args[1:])
            if script is None:
                return []
            found = shell_commands(script, line, {**env, **inline}, depth=depth + 1,
                                   single_line=True)
            if base is None:
                return found
            return [replace(base, argv=c.argv, line=c.line, text=c.text,
                            env={**base.env, **c.env}) for c in found]
        elif head in _CONTAINER_TOOLS and _is_run(args):
            return _docker_run(args, line, text, env, depth)
        else:
            break
    merged = {**env, **inline}
    if base is not None:
        merged = {**base.env, **merged}
        return [replace(base, argv=tuple(args), line=line, text=text, env=merged)]
    return [Command(tuple(args), line, text, merged)]


def _drop_options(args: list[str], takes_value: tuple[str, ...] = ()) -> list[str]:
    """Leading ``-x``/``--xx`` options (and values of those in ``takes_value``), and env
    assignments for ``env``."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return args[i + 1:]
        if arg in takes_value:
            i += 2
            continue
        if arg.startswith("-") and len(arg) > 1:
            i += 1
            continue
        break
    return args[i:]


def _has_c_flag(args: list[str]) -> bool:
    """``sh -c``, ``bash -lc``, ``sh -e -c``: a ``c`` among the leading short flags."""
    for arg in args:
        if not arg.startswith("-") or arg.startswith("--"):
            return False
        if "c" in arg[1:]:
            return True
    return False


def _script_argument(args: list[str]) -> str | None:
    """The script of ``sh [-flags] -c SCRIPT``: the first argument after the flags."""
    for i, arg in enumerate(args):
        if arg.startswith("-"):
            continue
        return args[i]
    return None


def _is_run(args: list[str]) -> bool:
    rest = args[1:]
    if rest[:2] == ["container", "run"]:
        return True
    return rest[:1] == ["run"]


# Options of ``docker run`` that take no value; every other option takes one.
_DOCKER_BOOL_LONG = frozenset({
    "--rm", "--detach", "--interactive", "--tty", "--privileged", "--init", "--publish-all",
    "--read-only", "--sig-proxy", "--no-healthcheck", "--oom-kill-disable", "--help",
    "--disable-content-trust", "--quiet", "--use-api-socket",
})
_DOCKER_BOOL_SHORT = frozenset("ditPq")


def _docker_run(args: list[str], line: int | None, text: str, env: dict[str, EnvVar],
                depth: int) -> list[Command]:
    start = 2 if args[1] == "run" else 3
    rest = args[start:]
    publish: list[Publish] = []
    mounts: list[Mount] = []
    cenv: dict[str, EnvVar] = {}
    user: str | None = None
    privileged = False
    i = 0
    image = ""
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("-") or arg == "-":
            image = arg
            i += 1
            break
        name, eq, attached = arg.partition("=")
        if arg.startswith("--"):
            if name in _DOCKER_BOOL_LONG:
                if name == "--privileged" and attached.lower() != "false":
                    privileged = True
                i += 1
                continue
            value = attached if eq else (rest[i + 1] if i + 1 < len(rest) else "")
            i += 1 if eq else 2
        else:
            letters = arg[1:]
            if letters and set(letters) <= _DOCKER_BOOL_SHORT:
                i += 1
                continue
            name = arg[:2]
            if len(arg) > 2:
                value = arg[2:].lstrip("=")
                i += 1
            else:
                value = rest[i + 1] if i + 1 < len(rest) else ""
                i += 2
        if name in ("-p", "--publish"):
            item = parse_port(value, line)
            if item is not None:
                publish.append(item)
        elif name in ("-e", "--env"):
            key, eq, val = value.partition("=")
            if key and eq:
                cenv[key] = EnvVar(val, line)
            elif key in env:  # -e NAME passes the shell's value on
                cenv[key] = env[key]
        elif name in ("-v", "--volume"):
            mounts.append(parse_volume(value, line))
        elif name == "--mount":
            mounts.append(_parse_mount_option(value, line))
        elif name in ("-u", "--user"):
            user = value
        elif name == "--network" and value == "host":
            publish.append(Publish("", "*", "*", line, "--network host"))
    inner = rest[i:]
    # A container sees only what -e passes, not the shell's exports.
    base = Command((), line, text, cenv, tuple(publish), tuple(mounts), image,
                   user, privileged, where=f"container {image}" if image else "")
    if not inner:
        return [base]
    return unwrap(inner, line, text, dict(base.env), depth=depth + 1, base=base)


def parse_port(spec: str, line: int | None) -> Publish | None:
    """``[ip:]host:container[/proto]`` or ``container``: the published port."""
    text = str(spec).strip()
    if not text:
        return None
    body = text.split("/", 1)[0]
    if body.startswith("["):  # [::1]:8265:8265
        close = body.find("]")
        host_ip, rest = body[1:close], body[close + 2:]
        parts = rest.split(":")
    else:
        parts = body.split(":")
        host_ip = parts.pop(0) if len(parts) == 3 else ""
    if len(parts) == 1:
        return Publish(host_ip, "", parts[0], line, text)  # a random host port
    return Publish(host_ip, parts[0], parts[-1], line, text)


def parse_volume(spec: str, line: int | None) -> Mount:
    """``source:target[:options]`` (``-v``, compose short syntax)."""
    text = str(spec)
    parts = text.split(":")
    if len(parts) >= 2 and len(parts[0]) == 1 and parts[1].startswith("\\"):
        parts = [parts[0] + ":" + parts[1], *parts[2:]]  # C:\models on Windows
    if len(parts) == 1:
        return Mount("", parts[0], False, line, text)
    options = parts[2].split(",") if len(parts) > 2 else []
    return Mount(parts[0], parts[1], "ro" in options or "readonly" in options, line, text)


def _parse_mount_option(spec: str, line: int | None) -> Mount:
    """``--mount type=bind,source=/m,target=/models,readonly``."""
    fields: dict[str, str] = {}
    read_only = False
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key in ("readonly", "ro") and (not eq or value.lower() in ("1", "true")):
            read_only = True
        fields[key] = value
    source = fields.get("source") or fields.get("src") or ""
    target = fields.get("target") or fields.get("destination") or fields.get("dst") or ""
    return Mount(source, target, read_only, line, spec)


# -- Dockerfile ---------------------------------------------------------------------------------

_INSTRUCTION = re.compile(r"^\s*([A-Za-z]+)\s+(.*)$", re.S)


def dockerfile_commands(text: str) -> tuple[list[Command], dict[str, EnvVar], str | None,
                                            int | None]:
    """The final stage's ``ENTRYPOINT`` + ``CMD`` (and ``RUN`` lines that start servers are
    build steps, so left out), the environment (``ENV``) and the last ``USER`` with its line."""
    env: dict[str, EnvVar] = {}
    entrypoint: tuple[list[str] | str, int] | None = None
    cmd: tuple[list[str] | str, int] | None = None
    user: str | None = None
    user_line: int | None = None
    if len(text) > MAX_SCRIPT:
        return [], env, None, None
    for line, raw in _dockerfile_lines(text):
        match = _INSTRUCTION.match(raw)
        if not match:
            continue
        instruction, body = match.group(1).upper(), match.group(2).strip()
        if instruction == "FROM":  # a new stage: what the last stage sets is what runs
            env, entrypoint, cmd, user, user_line = {}, None, None, None, None
        elif instruction == "ENV":
            env.update(_env_instruction(body, line))
        elif instruction == "USER":
            user, user_line = body.split()[0] if body.split() else body, line
        elif instruction in ("CMD", "ENTRYPOINT"):
            form: list[str] | str = _exec_form(body)
            if instruction == "CMD":
                cmd = (form, line)
            else:
                entrypoint, cmd = (form, line), None  # ENTRYPOINT resets an inherited CMD
    commands: list[Command] = []
    launch = _launch(entrypoint, cmd)
    if launch is not None:
        argv, line, shell_form = launch
        if shell_form:
            commands.extend(shell_commands(" ".join(argv), line, dict(env), single_line=True))
        else:
            commands.extend(unwrap(argv, line, clip_text(" ".join(argv)), dict(env)))
    return commands, env, user, user_line


def _dockerfile_lines(text: str) -> Iterator[tuple[int, str]]:
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start = index
        current = lines[index]
        index += 1
        if current.lstrip().startswith("#"):
            continue
        parts = [current]
        while parts[-1].rstrip().endswith("\\") and index < len(lines):
            parts[-1] = parts[-1].rstrip()[:-1]
            nxt = lines[index]
            index += 1
            if nxt.lstrip().startswith("#"):
                parts.append("\\")  # comment lines inside a continuation are dropped
                continue
            parts.append(nxt)
        joined = " ".join(p for p in parts if p != "\\")
        heredoc = _HEREDOC.search(joined)
        if heredoc:
            end = heredoc.group(2)
            while index < len(lines) and lines[index].strip() != end:
                index += 1
            index += 1
        yield start + 1, joined


def _env_instruction(body: str, line: int) -> dict[str, EnvVar]:
    tokens = _tokens(body)
    if tokens and "=" not in tokens[0]:  # legacy ENV KEY value with spaces
        return {tokens[0]: EnvVar(" ".join(tokens[1:]), line)}
    out: dict[str, EnvVar] = {}
    for token in tokens:
        key, eq, value = token.partition("=")
        if eq and key:
            out[key] = EnvVar(value, line)
    return out


def _exec_form(body: str) -> list[str] | str:
    if body.startswith("["):
        try:
            value = json.loads(body)
        except ValueError:
            return body
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)[:MAX_TOKENS]
    return body


def _launch(entrypoint: tuple[list[str] | str, int] | None,
            cmd: tuple[list[str] | str, int] | None) -> tuple[list[str], int, bool] | None:
    """What a container runs: exec-form ENTRYPOINT + CMD, or one of them (shell form is
    ``/bin/sh -c``)."""
    if entrypoint is not None:
        form, line = entrypoint
        if isinstance(form, str):
            return [form], line, True
        extra = cmd[0] if cmd is not None and isinstance(cmd[0], list) else []
        return [*form, *extra], cmd[1] if cmd is not None and extra else line, False
    if cmd is not None:
        form, line = cmd
        if isinstance(form, str):
            return [form], line, True
        return list(form), line, False
    return None


# -- compose / Kubernetes lists ------------------------------------------------------------------

def argv_of(value: object) -> list[str] | None:
    """A compose ``command:``/``entrypoint:`` (a string is split like compose does: shlex,
    no shell) or a Kubernetes list."""
    if isinstance(value, str):
        try:
            return shlex.split(value)[:MAX_TOKENS]
        except ValueError:
            return value.split()[:MAX_TOKENS]
    if isinstance(value, list):
        return [str(v) for v in value[:MAX_TOKENS] if v is not None]
    return None


def options(argv: tuple[str, ...] | list[str], *, flags: frozenset[str] = frozenset(),
            ) -> dict[str, list[tuple[str, int]]]:
    """Long and short options of a command: ``--name=value``, ``--name value``; names in
    ``flags`` take no value (their value is ``"true"``). Index is the position in argv."""
    found: dict[str, list[tuple[str, int]]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        if arg.startswith("-") and len(arg) > 1:
            name, eq, value = arg.partition("=")
            if eq:
                found.setdefault(name, []).append((value, i))
            elif name in flags or i + 1 >= len(argv) or (
                    argv[i + 1].startswith("-") and len(argv[i + 1]) > 1):
                found.setdefault(name, []).append(("true", i))
            else:
                found.setdefault(name, []).append((argv[i + 1], i))
                i += 1
        i += 1
    return found


def last(found: Mapping[str, list[tuple[str, int]]], *names: str) -> str | None:
    """The last value given for any of the option names."""
    best: tuple[str, int] | None = None
    for name in names:
        for value, index in found.get(name, ()):
            if best is None or index > best[1]:
                best = (value, index)
    return best[0] if best is not None else None


def is_false(value: str | None) -> bool:
    return value is not None and value.strip().strip("'\"").lower() in (
        "false", "0", "no", "off", "n", "f")


def is_true(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str | int) and str(value).strip().strip("'\"").lower() in (
        "true", "1", "yes", "on", "y", "t")
