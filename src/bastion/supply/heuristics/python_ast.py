"""Static analysis of one Python file: what each function (scope) of it does.

The source is parsed with :func:`ast.parse` and never compiled or run. The tree is walked
iteratively (no recursion on hostile nesting), and every call, constant and use of
``os.environ`` becomes a :class:`Signal` in the scope it occurs in: ``"<module>"`` for code
that runs on import (module and class bodies), ``"<main>"`` for the body of an
``if __name__ == "__main__":`` guard, else the function's qualified name. A call
graph between the module's own functions lets :mod:`.verdicts` say whether a read and a send
happen in one function, in functions that call each other, or only in one module.

Payloads that are constants (``exec(base64.b64decode('...'))``, ``exec('import os; ...')``)
are decoded statically (:mod:`.resolve`) and analysed in turn, a few levels deep; what they
do is reported as if it stood at the ``exec`` line, marked ``[payload]``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from bastion.supply.heuristics import patterns as P
from bastion.supply.heuristics.interface import (
    MAIN,
    MAX_SOURCE,
    MODULE,
    ModuleFacts,
    Sig,
    Signal,
    parse,
)
from bastion.supply.heuristics.nodes import (
    BULK_METHODS,
    INTERESTING,
    SCOPES,
    blob_kind,
    children,
    fallback,
    hidden,
    keyword,
    keyword_node,
    main_guard,
    preview,
    tricks,
)
from bastion.supply.heuristics.resolve import Resolver

#: Payloads decoded inside payloads are followed this deep.
MAX_PAYLOAD_DEPTH = 3
#: Signals kept per file; a generated file with 100,000 calls does not need more.
MAX_SIGNALS = 5_000
#: Assignments followed back from an ``exec`` argument.
MAX_HOPS = 4


def analyze_source(text: str, depth: int = 0) -> ModuleFacts:
    """Parse and analyse one file's text; never raises on hostile input."""
    facts = ModuleFacts(lines=text.splitlines())
    if len(text) > MAX_SOURCE:
        facts.problem = f"larger than {MAX_SOURCE} characters; not parsed"
        return facts
    tree, problem = parse(text)
    if tree is None:
        facts.problem = problem
        facts.signals.extend(fallback(facts.lines))
        return facts
    facts.tree = tree
    try:
        walker = _Walker(facts, depth)
        walker.run(tree)
        facts.resolver = walker.r
    except (RecursionError, MemoryError):
        facts.problem = "nested too deeply to analyse"
    facts.signals.extend(hidden(facts.lines))
    return facts


class _Walker:
    """One iterative pass over a tree, recording signals and the call graph."""

    def __init__(self, facts: ModuleFacts, depth: int) -> None:
        self.facts, self.depth = facts, depth
        self.r = Resolver(())
        self.environ_names: set[str] = set()
        self.parents: dict[int, ast.AST] = {}
        self.assigned: dict[tuple[str, str], ast.AST] = {}

    def add(self, kind: Sig, node: ast.AST, scope: str, detail: str) -> None:
        if len(self.facts.signals) < MAX_SIGNALS:
            self.facts.signals.append(Signal(kind, getattr(node, "lineno", 0), scope, detail))

    def run(self, tree: ast.Module) -> None:
        """Two passes over one flat, source-ordered list: names first, then signals."""
        order: list[tuple[ast.AST, str, str | None]] = []
        stack: list[tuple[ast.AST, str, str | None]] = [(tree, MODULE, None)]
        parents = self.parents
        while stack:
            node, scope, cls = stack.pop()
            if isinstance(node, SCOPES):
                scope, cls = self._enter(node, scope, cls)
            order.append((node, scope, cls))
            kids = list(children(node))
            guarded: list[ast.stmt] = []
            if scope == MODULE and isinstance(node, ast.If) and main_guard(node.test):
                self.facts.scopes.add(MAIN)
                guarded = node.body
            for child in reversed(kids):
                parents[id(child)] = node
                inner = MAIN if guarded and any(child is g for g in guarded) else scope
                stack.append((child, inner, cls))
        self.r = Resolver(node for node, _, _ in order)
        self.environ_names = {name for name, target in self.r.aliases.items()
                              if target in ("os.environ", "os.environb")}
        for node, scope, cls in order:
            if isinstance(node, INTERESTING):
                self._visit(node, scope, cls)

    def _enter(self, node: ast.AST, scope: str, cls: str | None) -> tuple[str, str | None]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if cls is not None and isinstance(self.parents.get(id(node)), ast.ClassDef):
                name = f"{cls}.{node.name}"
                self.facts.classes.setdefault(cls, ([], []))[1].append(name)
            else:
                name = node.name if scope in (MODULE, MAIN) else f"{scope}.{node.name}"
            self.facts.scopes.add(name)
            return name, cls
        if isinstance(node, ast.ClassDef):
            bases = [self.r.qual(b) or "?" for b in node.bases]
            self.facts.classes.setdefault(node.name, ([], []))[0].extend(bases)
            return scope, node.name
        return scope, cls

    def _visit(self, node: ast.AST, scope: str, cls: str | None) -> None:
        if isinstance(node, ast.Call):
            self._call(node, scope, cls)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            if not isinstance(self.parents.get(id(node)), ast.Expr):  # docstrings, comments
                self._constant(node, scope)
        elif isinstance(node, ast.Name):
            if node.id in self.environ_names:
                self._environ(node, scope)
        elif isinstance(node, ast.Attribute):
            if node.attr in ("environ", "environb") and self.r.qual(node) in (
                    "os.environ", "os.environb"):
                self._environ(node, scope)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            self.assigned[(scope, node.targets[0].id)] = node.value

    # -- calls -------------------------------------------------------------------------------

    def _call(self, node: ast.Call, scope: str, cls: str | None) -> None:
        self._edge(node, scope, cls)
        name = self.r.qual(node.func) or ""
        method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        if name in P.NETWORK_CALLS:
            url = self.r.static(node.args[0]) if node.args else None
            fixed = f" {url[:100]!r}" if isinstance(url, str) and url.startswith("https://") else ""
            self.add(Sig.NETWORK, node, scope, f"{name}{fixed}")
        elif name in P.DNS_CALLS and node.args and self.r.static(node.args[0]) is None:
            self.add(Sig.DNS, node, scope, f"{name} of a computed host name")
        if name in P.EXEC_CALLS:
            self._exec(node, name, scope)
        elif name in P.SHELL_CALLS:
            self._shell(node, name, scope)
        if name in ("builtins.open", "io.open", "codecs.open"):
            mode = self.r.static(node.args[1]) if len(node.args) > 1 else keyword(
                self.r, node, "mode")
            if isinstance(mode, str) and set(mode) & set("wax+"):
                self.add(Sig.FILE_WRITE, node, scope, f"open(..., {mode!r})")
        elif name in P.FILE_WRITE_CALLS or method in P.FILE_WRITE_METHODS:
            self.add(Sig.FILE_WRITE, node, scope, name or method)
        if name in P.CHMOD_CALLS or method == "chmod":
            self.add(Sig.CHMOD, node, scope, name or method)
        if name in P.CREDENTIAL_STORE_CALLS or name.startswith("browser_cookie3."):
            self.add(Sig.CRED_STORE, node, scope, name)
        if name in ("os.getenv", "os.getenvb", "os.environ.get", "os.environ.pop"):
            self._env_key(node, node.args[0] if node.args else None, scope)
        if name in P.IMPORT_CALLS and node.args and self.r.static(node.args[0]) is None:
            self.add(Sig.DYN_IMPORT, node, scope, "__import__ of a computed name")
        head, _, attr = name.partition(".")
        if head == "builtins" and attr in P.DANGEROUS_BUILTINS and not isinstance(
                node.func, ast.Name):
            self.add(Sig.BUILTINS_TRICK, node, scope, f"{attr} reached indirectly")

    def _edge(self, node: ast.Call, scope: str, cls: str | None) -> None:
        """Record a call of one of the module's own functions or methods."""
        func, target = node.func, None
        if isinstance(func, ast.Name):
            target = f"{func.id}.__init__" if self.r.is_class(func.id) else func.id
            if scope not in (MODULE, MAIN):  # a function nested in this one
                self.facts.calls.setdefault(scope, set()).add(f"{scope}.{func.id}")
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner in ("self", "cls") and cls is not None:
                target = f"{cls}.{func.attr}"
            elif self.r.is_class(owner):
                target = f"{owner}.{func.attr}"
        if target is not None:
            self.facts.calls.setdefault(scope, set()).add(target)

    def _exec(self, node: ast.Call, name: str, scope: str) -> None:
        short = name.rsplit(".", 1)[-1]
        arg = node.args[0] if node.args else None
        if arg is None:
            return
        inner = list(self._reach(arg, scope))
        calls = [self.r.qual(n.func) or "" for n in inner if isinstance(n, ast.Call)]
        methods = [n.func.attr for n in inner
                   if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
        if any(c in P.NETWORK_CALLS for c in calls):
            self.add(Sig.EXEC_DOWNLOADED, node, scope, f"{short} of data fetched from the network")
            return
        decoders = [c.rsplit(".", 1)[-1] for c in calls if c in P.DECODE_CALLS] + [
            m for m in methods if m in P.DECODE_METHODS] + tricks(self.r, inner)
        value = self.r.static(arg)
        if short not in ("exec", "eval", "compile", "execfile") and value is None:
            # pickle.loads(b64decode(message)) is how RPC moves objects, and Keras rebuilds
            # lambdas from marshalled code: only a constant payload is hidden on purpose.
            decoders = []
        if decoders:
            chain = " → ".join(dict.fromkeys(reversed(decoders)))
            self.add(Sig.EXEC_DECODED, node, scope,
                     f"{short} of data decoded by {chain}{preview(value)}")
        elif isinstance(value, str | bytes):
            pass  # constant code: analysed as a payload below
        elif any(c in ("builtins.open", "io.open") for c in calls) or any(
                m in ("read", "read_text", "read_bytes") for m in methods):
            return  # exec(open('pkg/version.py').read()): how setup.py files load a version
        elif short in ("exec", "eval", "compile", "execfile", "FunctionType"):
            self.add(Sig.EXEC, node, scope, f"{short} of dynamic data")
        if isinstance(value, str | bytes):
            self._payload(value, node, scope)

    def _reach(self, root: ast.AST, scope: str) -> Iterator[ast.AST]:
        """The expression's nodes, following names back to their assignment in the scope."""
        todo, hops, seen = [root], 0, 0
        while todo and seen < 2_000:
            node = todo.pop()
            seen += 1
            yield node
            if isinstance(node, ast.Name) and hops < MAX_HOPS:
                value = self.assigned.get((scope, node.id))
                if value is not None:
                    hops += 1
                    todo.append(value)
            todo.extend(children(node))

    def _payload(self, value: str | bytes, node: ast.Call, scope: str) -> None:
        """Analyse a constant (or decoded) payload and lift what it does to this line."""
        if self.depth >= MAX_PAYLOAD_DEPTH:
            return
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        inner = analyze_source(text, self.depth + 1)
        for signal in inner.signals:
            self.add(signal.kind, node, scope, f"[payload] {signal.detail}")

    def _shell(self, node: ast.Call, name: str, scope: str) -> None:
        command = node.args[0] if node.args else keyword_node(node, "args")
        tokens = self._command(command, scope)
        text = " ".join(tokens).lower()
        programs = {t.rsplit("/", 1)[-1].lower() for t in tokens}
        if programs & P.DOWNLOADERS:
            fixed = next((f" {t[:100]!r}" for t in tokens if t.startswith("https://")), "")
            downloader = sorted(programs & P.DOWNLOADERS)[0]
            self.add(Sig.NETWORK, node, scope, f"{name} runs {downloader}{fixed}")
            if P.pipes_to_shell(text):
                self.add(Sig.EXEC_DOWNLOADED, node, scope, f"runs what it downloads: {text[:80]!r}")
                return
        program = tokens[0].rsplit("/", 1)[-1].lower() if tokens else ""
        if not tokens:
            self.add(Sig.SHELL_DYNAMIC, node, scope, f"{name}: a computed command")
        elif program in P.BUILD_TOOLS and not {"pip", "install"} <= set(tokens):
            self.add(Sig.SHELL_BUILD, node, scope, f"{name}: {text[:80]}")
        else:
            self.add(Sig.SHELL, node, scope, f"{name}: {text[:80]}")

    def _command(self, node: ast.AST | None, scope: str = "", hops: int = 0) -> list[str]:
        """The command's leading constant words (``["cmake", ...] + args`` → ``cmake``)."""
        if node is None or hops > MAX_HOPS:
            return []
        value = self.r.static(node)
        if isinstance(value, str):
            return value.split()
        if isinstance(node, ast.Name):
            assigned = self.assigned.get((scope, node.id))
            return self._command(assigned, scope, hops + 1) if assigned is not None else []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._command(node.left, scope, hops + 1)
        if isinstance(node, ast.Call) and self.r.qual(node.func) == "shlex.split" and node.args:
            return self._command(node.args[0], scope, hops + 1)
        if isinstance(node, ast.List | ast.Tuple):
            words = []
            for element in node.elts:
                item = self.r.static(element)
                if isinstance(item, str):
                    words.append(item)
                elif self.r.qual(element) == "sys.executable":
                    words.append("python")
                else:
                    break
            return words
        return []

    # -- constants and the environment -------------------------------------------------------

    def _constant(self, node: ast.Constant, scope: str) -> None:
        value = node.value
        if not isinstance(value, str | bytes):
            return
        text = value if isinstance(value, str) else value[:1 << 16].decode("latin-1")
        if 3 <= len(text) < 4096:
            if P.CREDENTIAL_ANY.search(text):
                what = next(w for p, w in P.CREDENTIAL_PATHS if p.search(text))
                self.add(Sig.CRED_FILE, node, scope, f"{what}: {text[:80]!r}")
            if P.METADATA_HOSTS.search(text):
                self.add(Sig.METADATA, node, scope, f"cloud metadata service: {text[:80]!r}")
            if P.EXFIL_ENDPOINTS.search(text):
                self.add(Sig.WEBHOOK, node, scope, f"exfiltration endpoint: {text[:80]!r}")
            if P.DISCORD_TOKEN.search(text):
                self.add(Sig.CRED_STORE, node, scope, "Discord token pattern")
            if P.ENV_NAME.fullmatch(text) and P.SECRET_ENV.search(text):
                self.add(Sig.SECRET_NAME, node, scope, text)
        if len(text) >= P.BLOB_LENGTH:
            kind = blob_kind(text)
            if kind:
                self.add(Sig.BLOB, node, scope, f"{len(text)}-character {kind} string")

    def _environ(self, node: ast.AST, scope: str) -> None:
        """Classify one use of ``os.environ``: a key read, a bulk read, or neither."""
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.Subscript) and parent.value is node:
            if isinstance(parent.ctx, ast.Load):
                self._env_key(parent, parent.slice, scope)
            return
        if isinstance(parent, ast.Attribute):
            # get/pop are classified at the call; update/clear write
            if parent.attr in BULK_METHODS and not self._in_envkeyword(parent):
                self.add(Sig.ENV_BULK, node, scope, f"os.environ.{parent.attr}()")
            return
        if isinstance(parent, ast.Compare | ast.keyword | ast.Assign | ast.withitem):
            return
        if isinstance(parent, ast.For | ast.comprehension | ast.Call | ast.Starred | ast.Dict |
                      ast.JoinedStr | ast.FormattedValue | ast.BinOp | ast.Return | ast.List |
                      ast.Tuple) and not self._in_envkeyword(node):
            self.add(Sig.ENV_BULK, node, scope, "the whole of os.environ")

    def _in_envkeyword(self, node: ast.AST) -> bool:
        """Inside ``env=...`` of a call: handing the environment to a child process."""
        current: ast.AST | None = node
        for _ in range(6):
            current = self.parents.get(id(current)) if current is not None else None
            if isinstance(current, ast.keyword):
                return current.arg == "env"
            if current is None or isinstance(current, ast.stmt):
                return False
        return False

    def _env_key(self, node: ast.AST, key: ast.AST | None, scope: str) -> None:
        value = self.r.static(key) if key is not None else None
        if isinstance(value, str):
            if P.SECRET_ENV.search(value):
                self.add(Sig.ENV_SECRET, node, scope, value)
        elif key is not None:
            self.add(Sig.ENV_DYNAMIC, node, scope, "a computed variable name")
