"""The fast path of `bastion scan` (no Typer import) gives exactly what the Typer command
gives: same stdout, same exit code, for every format and for errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def _run(args: list[str], cwd: Path, fast: bool, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    base.update(env or {})
    code = ("import sys; from bastion.cli.fast import run_fast; "
            "sys.argv[0] = 'bastion'; rc = run_fast(sys.argv[1:]); "
            "assert rc is not None, 'fast path declined'; sys.exit(rc)") if fast else (
            "import sys; from bastion.cli.commands import app; sys.argv[0] = 'bastion'; app()")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=base,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [
    ["scan", str(DEMO), "-q", "-f", "json"],
    ["scan", str(DEMO), "--format=sarif", "--quiet"],
    ["scan", str(DEMO / "model.pkl"), "-q", "--fail-on", "critical", "-f", "json"],
    ["scan", str(DEMO / "classifier.safetensors"), "-q"],
    ["scan", "/no/such/path", "-q"],
])
def test_fast_path_matches_typer(args: list[str], tmp_path: Path) -> None:
    fast = _run(args, tmp_path, fast=True)
    slow = _run(args, tmp_path, fast=False)
    assert fast.returncode == slow.returncode, (fast.stderr, slow.stderr)

    def stable(text: str) -> str:  # timings and start times differ between two runs
        import re
        text = re.sub(r'"(seconds|started|startTimeUtc)": [^,\n]*', "", text)
        return re.sub(r"in \d+\.\d+s", "in Ns", text)

    assert stable(fast.stdout) == stable(slow.stdout)
    assert "Traceback" not in fast.stderr


def test_fast_path_reads_environment_and_declines_what_it_does_not_know(tmp_path: Path) -> None:
    from bastion.cli.fast import run_fast

    assert run_fast(["scan", "--help"]) is None
    assert run_fast(["scan", str(DEMO), "--format", "xml"]) is None  # Typer lists the choices
    assert run_fast(["rules"]) is None
    assert run_fast(["scan"]) is None
    env = _run(["scan", str(DEMO / "model.pkl")], tmp_path, fast=True,
               env={"BASTION_FORMAT": "json", "BASTION_QUIET": "1"})
    assert env.returncode == 1
    assert '"PICKLE-DANGEROUS-GLOBAL"' in env.stdout


# -- bastion sign --------------------------------------------------------------------------------


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Path, Path]:
    """A small model folder and an ECDSA key pair."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(300_000))
    (model / "sub" / "config.json").write_text('{"a": 1}')
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref")
    key = tmp_path / "key.pem"
    done = subprocess.run([sys.executable, "-m", "bastion", "keygen", str(key)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return model, key


def _verify(model: Path, key: Path, signature: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bastion", "verify", str(model), "--key",
                           str(key.with_suffix(".pub")), "-s", str(signature), "-q", "-f",
                           "json"], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("extra", [
    [],
    ["--method", "files"],
    ["--method=shards", "--shard-size", "100000", "--workers=1"],
    ["--hash", "blake2b", "--ignore", "sub", "--include-git"],
])
def test_sign_fast_path_matches_typer(signing: tuple[Path, Path], tmp_path: Path,
                                      extra: list[str]) -> None:
    model, key = signing
    sigs = {}
    for fast in (True, False):
        sig = tmp_path / f"{'fast' if fast else 'typer'}.sig"
        done = _run(["sign", str(model), "--key", str(key), "-o", str(sig), *extra],
                    tmp_path, fast=fast)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith("signed "), done.stderr
        assert str(sig) in done.stderr
        sigs[fast] = sig
        assert _verify(model, key, sig).returncode == 0
    import json

    def manifest(sig: Path) -> object:  # the signed statement: the same bytes hashed alike
        import base64

        bundle = json.loads(sig.read_text())
        return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))

    assert manifest(sigs[True]) == manifest(sigs[False])


@pytest.mark.parametrize("case", ["no-key-file", "public-key", "no-path", "bad-shard-size"])
def test_sign_fast_path_errors_match_typer(signing: tuple[Path, Path], tmp_path: Path,
                                           case: str) -> None:
    model, key = signing
    args = {"no-key-file": ["sign", str(model), "--key", str(tmp_path / "none.pem")],
            "public-key": ["sign", str(model), "--key", str(key.with_suffix(".pub"))],
            "no-path": ["sign", str(tmp_path / "absent"), "--key", str(key)],
            "bad-shard-size": ["sign", str(model), "--key", str(key), "--shard-size", "0"],
            }[case]
    slow = _run(args, tmp_path, fast=False)
    assert slow.returncode == 2
    if case == "bad-shard-size":  # Typer's own range message: the fast path declines
        from bastion.cli.fast import run_fast

        assert run_fast(args) is None
        return
    fast = _run(args, tmp_path, fast=True)
    assert fast.returncode == 2
    assert fast.stderr.splitlines()[0] == slow.stderr.splitlines()[0]
    assert "Traceback" not in fast.stderr
    assert not (model / "model.sig").exists()  # a failed signing writes nothing


def test_sign_fast_path_declines_what_it_does_not_know(signing: tuple[Path, Path]) -> None:
    from bastion.cli.fast import run_fast

    model, key = signing
    for args in (["sign", "--help"], ["sign", str(model)],  # no key: Typer's usage message
                 ["sign", str(model), "--key", str(key), "--sigstore"],
                 ["sign", str(model), "--key", str(key), "--cert", "c.pem"],
                 ["sign", str(model), "--key", str(key), "--hash", "md5"],
                 ["sign", str(model), "--key", str(key), "--workers", "x"],
                 ["sign", str(model), str(model), "--key", str(key)]):
        assert run_fast(args) is None, args


def test_sign_hashes_before_the_signing_code_is_imported(signing: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    """The fast path of `bastion sign` has not imported Typer, Rich, cryptography, pathlib,
    dataclasses or typing when the hashing threads start: the start-up overlaps the hashing."""
    model, key = signing
    probe = ("import sys, threading\n"
             "from bastion.sign import hashing\n"
             "seen = {}\n"
             "original = hashing.Pending.__init__\n"
             "def spy(self, *a, **k):\n"
             "    seen.update({m: m in sys.modules for m in ('typer', 'rich', 'cryptography',\n"
             "                                               'pathlib', 'dataclasses',\n"
             "                                               'typing')})\n"
             "    original(self, *a, **k)\n"
             "hashing.Pending.__init__ = spy\n"
             "from bastion.cli.fast import run_fast\n"
             f"rc = run_fast(['sign', {str(model)!r}, '--key', {str(key)!r}, '-q'])\n"
             "print(rc, sorted(m for m, loaded in seen.items() if loaded), len(seen))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["0", "[]", "6"], (done.stdout, done.stderr)
    assert (model / "model.sig").is_file()


# -- bastion verify ------------------------------------------------------------------------------


def _stable(text: str) -> str:
    import re

    text = re.sub(r'"(seconds|started|startTimeUtc)": [^,\n]*', "", text)
    return re.sub(r"in \d+\.\d+s", "in Ns", text)


@pytest.mark.parametrize("case", ["verified", "modified", "added", "wrong-key", "unsigned",
                                  "no-trust", "sarif", "corrupt"])
def test_verify_fast_path_matches_typer(signing: tuple[Path, Path], tmp_path: Path,
                                        case: str) -> None:
    model, key = signing
    sig = tmp_path / "model.sig"
    done = _run(["sign", str(model), "--key", str(key), "-o", str(sig), "-q"], tmp_path,
                fast=True)
    assert done.returncode == 0, done.stderr
    pub = str(key.with_suffix(".pub"))
    args = ["verify", str(model), "-s", str(sig), "--key", pub, "-f", "json", "-q"]
    expected = 1
    if case == "verified":
        expected = 0
    elif case == "modified":
        (model / "weights.bin").write_bytes(b"changed")
    elif case == "added":
        (model / "extra.txt").write_text("new")
    elif case == "wrong-key":
        other = tmp_path / "other.pem"
        subprocess.run([sys.executable, "-m", "bastion", "keygen", str(other)], check=True,
                       capture_output=True, timeout=60)
        args[args.index(pub)] = str(other.with_suffix(".pub"))
    elif case == "unsigned":
        args = ["verify", str(model), "--key", pub, "-f", "json", "-q"]  # no model/model.sig
    elif case == "no-trust":
        args = ["verify", str(model), "-s", str(sig), "-q"]
        expected = 2
    elif case == "sarif":
        args = ["verify", str(model), f"--signature={sig}", f"--key={pub}", "--format=sarif",
                "--quiet", "--fail-on", "critical"]
        (model / "weights.bin").write_bytes(b"changed")  # a modified file is critical
    elif case == "corrupt":
        sig.write_text(sig.read_text()[:-40])
    fast = _run(args, tmp_path, fast=True)
    slow = _run(args, tmp_path, fast=False)
    assert fast.returncode == slow.returncode == expected, (fast.stderr, slow.stderr)
    assert _stable(fast.stdout) == _stable(slow.stdout)
    assert "Traceback" not in fast.stderr
    if expected == 2:
        assert fast.stderr.splitlines()[0] == slow.stderr.splitlines()[0]


def test_verify_fast_path_declines_what_it_does_not_know(signing: tuple[Path, Path]) -> None:
    from bastion.cli.fast import run_fast

    model, key = signing
    for args in (["verify", "--help"], ["verify"],
                 ["verify", str(model), "--sigstore", "--identity", "a", "--issuer", "b"],
                 ["verify", str(model), "--key", str(key), "--format", "xml"],
                 ["verify", str(model), "--key", str(key), "--workers", "0"]):
        assert run_fast(args) is None, args


def test_verify_hashes_before_pathlib_dataclasses_and_keys_are_imported(
        signing: tuple[Path, Path], tmp_path: Path) -> None:
    # Everything the main thread runs before the hashing threads start is wall time lost,
    # and everything after it competes with them: the verify fast path starts hashing with
    # only the cheapest modules loaded (see bastion.sign.manifest), and ends verified.
    model, key = signing
    sig = tmp_path / "model.sig"
    done = _run(["sign", str(model), "--key", str(key), "-o", str(sig), "-q"], tmp_path,
                fast=True)
    assert done.returncode == 0, done.stderr
    heavy = ("pathlib", "dataclasses", "inspect", "typing", "cryptography", "bastion.findings",
             "bastion.policy", "typer", "rich")
    probe = ("import sys\n"
             "from bastion.sign import hashing\n"
             "seen = {}\n"
             "original = hashing.Pending.__init__\n"
             "def spy(self, *a, **k):\n"
             f"    seen.update({{m: m in sys.modules for m in {heavy!r}}})\n"
             "    seen['interval'] = sys.getswitchinterval()\n"
             "    original(self, *a, **k)\n"
             "hashing.Pending.__init__ = spy\n"
             "from bastion.cli.fast import run_fast\n"
             f"rc = run_fast(['verify', {str(model)!r}, '-s', {str(sig)!r}, '--key', "
             f"{str(key.with_suffix('.pub'))!r}, '-q', '-f', 'json', '-o', "
             f"{str(tmp_path / 'out.json')!r}])\n"
             "print(rc, sorted(m for m in seen if seen[m] is True), seen['interval'] < 1e-3)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["0", "[]", "True"], (done.stdout, done.stderr)
    assert '"SIGN-VERIFIED"' in (tmp_path / "out.json").read_text()


def _entry(args: list[str], cwd: Path, **kwargs: object) -> subprocess.Popen[bytes]:
    """``python -m bastion ARGS``: the program's entry point, which ends fast-path commands
    with ``os._exit`` (after flushing and running atexit handlers)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    return subprocess.Popen([sys.executable, "-m", "bastion", *args], cwd=cwd, env=base,
                            **kwargs)  # type: ignore[call-overload]


def test_the_entry_point_flushes_everything_before_it_ends(tmp_path: Path) -> None:
    # Several hundred KB on a pipe: a lost buffer would cut the JSON short.
    big = tmp_path / "many"
    big.mkdir()
    for i in range(300):
        (big / f"m{i}.pkl").write_bytes((DEMO / "model.pkl").read_bytes())
    proc = _entry(["scan", str(big), "-q", "-f", "json"], tmp_path,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1  # findings at the default threshold
    import json

    report = json.loads(out)
    assert len({f["location"]["path"] for f in report["findings"]}) == 300
    assert b"Traceback" not in err


def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    proc = _entry(["scan", str(DEMO / "model.pkl"), "-q", "-f", "json"], tmp_path,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # as `| head -0` would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2  # the report was not delivered
    assert err == b""  # not "internal error", not a traceback: nothing to say


def test_a_closed_output_pipe_on_a_typer_command_ends_quietly_too(tmp_path: Path) -> None:
    # --jobs is the Typer command's alone: the fast path declines it.
    proc = _entry(["scan", str(DEMO / "model.pkl"), "-q", "-f", "json", "--jobs", "1"],
                  tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err == b""
