"""setup.py, read statically: the ``setup()`` call's name, install hooks and console scripts.

Installing an sdist runs setup.py, and every command class it registers (``cmdclass``)
runs inside pip. A custom ``build_ext`` that drives a compiler is how C extensions are built
and is left alone; a replaced ``install``, ``develop`` or ``egg_info`` is worth a (low) look,
and any hook that reaches the network, starts non-build programs or executes dynamic code
is high. Hooks are found both through ``cmdclass`` and as local subclasses of the
setuptools/distutils command classes (registration may go through a helper function).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from bastion.findings import Finding, Severity
from bastion.supply.heuristics import rules
from bastion.supply.heuristics.interface import ModuleFacts
from bastion.supply.heuristics.resolve import Resolver
from bastion.supply.heuristics.verdicts import STRONG, Source, reach

#: Commands whose replacement runs code during ``pip install`` itself.
INSTALL_COMMANDS = frozenset({"install", "develop", "egg_info", "build_py", "easy_install",
                              "bdist_egg", "install_lib", "install_scripts", "install_data",
                              "install_egg_info", "editable_wheel", "bdist_wheel", "build",
                              "dist_info"})
#: Where well-known command classes come from (importing one is not a hook of one's own).
KNOWN_PROVIDERS = ("setuptools", "distutils", "Cython", "torch.utils.cpp_extension",
                   "pybind11", "numpy.distutils", "wheel", "versioneer", "setuptools_rust",
                   "skbuild", "mypyc", "cffi", "jupyter_packaging", "setuptools_scm",
                   "nanobind", "scikit_build_core", "cmake_build_extension", "Pyrex",
                   "tensorflow", "jax")
_COMMAND_MODULES = ("setuptools.command.", "distutils.command.", "setuptools._distutils.command.")


@dataclass(frozen=True)
class Hook:
    command: str
    target: str  # a local class name, or the imported qualified name
    line: int
    local: bool


@dataclass
class SetupInfo:
    name: tuple[str, int] | None = None
    hooks: list[Hook] = field(default_factory=list)
    #: (command name, entry point, line)
    scripts: list[tuple[str, str, int]] = field(default_factory=list)


def _is_setup(resolver: Resolver, node: ast.Call) -> bool:
    name = resolver.qual(node.func) or ""
    return name in ("setup", "setuptools.setup", "distutils.core.setup",
                    "setuptools._distutils.core.setup", "numpy.distutils.core.setup",
                    "skbuild.setup")


def _keywords(resolver: Resolver, node: ast.Call, assigned: dict[str, ast.AST]
              ) -> dict[str, ast.AST]:
    """``setup()``'s keyword arguments, following ``**metadata`` one level back."""
    found: dict[str, ast.AST] = {}
    for keyword in node.keywords:
        if keyword.arg is not None:
            found[keyword.arg] = keyword.value
            continue
        value: ast.AST = keyword.value
        if isinstance(value, ast.Name):
            value = assigned.get(value.id, value)
        found.update(_dict_items(resolver, value))
    return found


def _dict_items(resolver: Resolver, node: ast.AST) -> dict[str, ast.AST]:
    if isinstance(node, ast.Dict):
        items: dict[str, ast.AST] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            name = resolver.static(key) if key is not None else None
            if isinstance(name, str):
                items[name] = value
        return items
    if isinstance(node, ast.Call) and resolver.qual(node.func) == "builtins.dict":
        keywords: dict[str, ast.AST] = {k.arg: k.value for k in node.keywords
                                        if k.arg is not None}
        return keywords
    return {}


def read_setup(facts: ModuleFacts) -> SetupInfo:
    """The name, hooks and console scripts one setup.py declares."""
    info = SetupInfo()
    tree, resolver = facts.tree, facts.resolver
    if tree is None or resolver is None:
        return info
    assigned: dict[str, ast.AST] = {}
    calls: list[ast.Call] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node.value
        elif isinstance(node, ast.Call) and _is_setup(resolver, node):
            calls.append(node)
    for call in calls:
        kwargs = _keywords(resolver, call, assigned)
        name = resolver.static(kwargs["name"]) if "name" in kwargs else None
        if isinstance(name, str) and info.name is None:
            info.name = (name, getattr(kwargs["name"], "lineno", call.lineno))
        if "cmdclass" in kwargs:
            info.hooks.extend(_cmdclass(resolver, kwargs["cmdclass"], assigned))
        if "entry_points" in kwargs:
            info.scripts.extend(_entry_points(resolver, kwargs["entry_points"], assigned))
    registered = {h.target for h in info.hooks}
    for name, (bases, _methods) in facts.classes.items():
        for base in bases:
            if base.startswith(_COMMAND_MODULES) and name not in registered:
                info.hooks.append(Hook(base.rsplit(".", 1)[-1], name, _class_line(tree, name),
                                       True))
                break
    return info


def _cmdclass(resolver: Resolver, node: ast.AST, assigned: dict[str, ast.AST]
              ) -> Iterator[Hook]:
    if isinstance(node, ast.Name):
        node = assigned.get(node.id, node)
    if isinstance(node, ast.Call):  # versioneer.get_cmdclass({...}): look inside
        for arg in node.args:
            yield from _cmdclass(resolver, arg, assigned)
        return
    for command, value in _dict_items(resolver, node).items():
        target = resolver.qual(value) or "?"
        local = isinstance(value, ast.Name) and resolver.is_class(value.id)
        yield Hook(command, value.id if local and isinstance(value, ast.Name) else target,
                   getattr(value, "lineno", 0), local)


def _entry_points(resolver: Resolver, node: ast.AST, assigned: dict[str, ast.AST]
                  ) -> Iterator[tuple[str, str, int]]:
    if isinstance(node, ast.Name):
        node = assigned.get(node.id, node)
    for group, value in _dict_items(resolver, node).items():
        if group not in ("console_scripts", "gui_scripts"):
            continue
        entries = resolver.static(value)
        items = entries if isinstance(entries, list) else [entries]
        for entry in items:
            for text in (entry.splitlines() if isinstance(entry, str) else ()):
                command, sep, target = text.partition("=")
                if sep and command.strip():
                    yield command.strip(), target.strip(), getattr(value, "lineno", 0)


def _class_line(tree: ast.AST, name: str) -> int:
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node.lineno
    return 0


def hook_findings(src: Source, info: SetupInfo) -> Iterator[Finding]:
    """Install hooks: low when they only customise, high when they do strong things."""
    facts = src.facts
    for hook in info.hooks:
        if not hook.local:
            if hook.target.startswith(KNOWN_PROVIDERS) or hook.target == "?":
                continue
            if hook.command in INSTALL_COMMANDS:
                yield src.finding(rules.INSTALL_HOOK, hook.line,
                                  f"the {hook.command!r} command is replaced by {hook.target}, "
                                  "defined in another file (analysed on its own)", [],
                                  Severity.LOW, command=hook.command)
            continue
        scopes: set[str] = set()
        for method in facts.classes.get(hook.target, ([], []))[1]:
            scopes |= reach(facts, method)
        strong = [s for s in facts.in_scopes(scopes) if s.kind in STRONG]
        if strong:
            kinds = ", ".join(dict.fromkeys(s.kind.value for s in strong))
            yield src.finding(rules.INSTALL_HOOK, hook.line,
                              f"the {hook.command!r} command runs {hook.target}, which does: "
                              f"{kinds}", strong, Severity.HIGH, command=hook.command)
        elif hook.command in INSTALL_COMMANDS:
            yield src.finding(rules.INSTALL_HOOK, hook.line,
                              f"the {hook.command!r} command is replaced by {hook.target} "
                              "(custom code at install time)", [], Severity.LOW,
                              command=hook.command)
