"""``bastion keygen``, ``sign`` and ``verify``: exit codes, messages, reports, lazy imports."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.sign import rules

from .conftest import Chain, make_model


def keygen(invoke: Callable[..., Any], tmp_path: Path, kind: str = "ecdsa-p256") -> Path:
    result = invoke("keygen", tmp_path / "release.key", "--type", kind)
    assert result.returncode == 0, result.output
    return tmp_path / "release.key"


def test_keygen(invoke: Callable[..., Any], tmp_path: Path) -> None:
    result = invoke("keygen", tmp_path / "release.key", "--type", "ed25519")
    assert result.returncode == 0
    assert stat.S_IMODE((tmp_path / "release.key").stat().st_mode) == 0o600
    assert (tmp_path / "release.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert "Ed25519 signatures verify with Bastion only" in result.stderr
    again = invoke("keygen", tmp_path / "release.key")
    assert again.returncode == 2
    assert "already exists; not overwriting a key" in again.stderr
    assert invoke("keygen", tmp_path / "release.key", "--force").returncode == 0


def test_encrypted_key_with_password_from_environment(invoke: Callable[..., Any],
                                                      tmp_path: Path) -> None:
    env = {"KEY_PASSWORD": "correct horse"}
    made = invoke("keygen", tmp_path / "k.key", "--password-env", "KEY_PASSWORD", env=env)
    assert made.returncode == 0
    model = make_model(tmp_path / "model")
    denied = invoke("sign", model, "--key", tmp_path / "k.key")
    assert denied.returncode == 2
    assert "the private key is encrypted" in denied.stderr
    assert "--password-env" in denied.stderr
    signed = invoke("sign", model, "--key", tmp_path / "k.key", "--password-env",
                    "KEY_PASSWORD", env=env)
    assert signed.returncode == 0, signed.output
    unset = invoke("sign", model, "--key", tmp_path / "k.key", "--password-env", "NOPE")
    assert "the variable is not set" in unset.stderr


def test_sign_and_verify(invoke: Callable[..., Any], tmp_path: Path) -> None:
    key = keygen(invoke, tmp_path)
    model = make_model(tmp_path / "model")
    signed = invoke("sign", model, "--key", key)
    assert signed.returncode == 0, signed.output
    assert "signed 5 files" in signed.stderr
    assert (model / "model.sig").is_file()
    ok = invoke("verify", model, "--key", tmp_path / "release.pub", "-f", "json")
    assert ok.returncode == 0
    report = json.loads(ok.stdout)
    assert [f["rule_id"] for f in report["findings"]] == [rules.VERIFIED.id]
    assert report["stats"]["files"] == 5

    (model / "weights.bin").write_bytes(b"poisoned")
    (model / "config.json").rename(model / "config.old")
    bad = invoke("verify", model, "--key", tmp_path / "release.pub", "-f", "json")
    assert bad.returncode == 1
    findings = json.loads(bad.stdout)["findings"]
    assert {(f["rule_id"], f["location"]["path"]) for f in findings} == {
        (rules.FILE_MODIFIED.id, f"{model}/weights.bin"),
        (rules.FILE_RENAMED.id, f"{model}/config.old")}


def test_verify_exit_codes(invoke: Callable[..., Any], tmp_path: Path) -> None:
    key = keygen(invoke, tmp_path)
    model = make_model(tmp_path / "model")
    assert invoke("sign", model, "--key", key).returncode == 0
    pub = tmp_path / "release.pub"
    (model / "notes.txt").write_text("added", encoding="utf-8")  # SIGN-FILE-ADDED, high
    assert invoke("verify", model, "--key", pub).returncode == 1
    assert invoke("verify", model, "--key", pub, "--fail-on", "critical").returncode == 0
    (model / "model.sig").write_text("{corrupt", encoding="utf-8")
    corrupt = invoke("verify", model, "--key", pub)
    assert corrupt.returncode == 1
    assert rules.SIGNATURE_MALFORMED.id in corrupt.stdout
    (model / "model.sig").unlink()
    unsigned = invoke("verify", model, "--key", pub, "-f", "json")
    assert unsigned.returncode == 1
    assert json.loads(unsigned.stdout)["findings"][0]["rule_id"] == rules.MISSING.id


@pytest.mark.parametrize(("args", "message"), [
    (("sign", "model"), "no signing key"),
    (("sign", "model", "--key", "absent.key"), "private key absent.key not found"),
    (("sign", "nowhere", "--key", "release.key"), "path not found: nowhere"),
    (("sign", "model", "--key", "release.pub"), "not a PEM private key"),
    (("sign", "model", "--key", "release.key", "--ignore", "../x"), "inside the folder"),
    (("verify", "model"), "nothing to verify with"),
    (("verify", "model", "--key", "release.pub", "--signature", "absent.sig"),
     "signature file not found"),
    (("verify", "model", "--key", "absent.pub"), "public key absent.pub not found"),
    (("verify", "model", "--sigstore"), "--sigstore needs --identity and --issuer"),
])
def test_usage_errors_exit_2(invoke: Callable[..., Any], tmp_path: Path,
                             args: tuple[str, ...], message: str) -> None:
    keygen(invoke, tmp_path)
    make_model(tmp_path / "model")
    result = invoke(*args)
    assert result.returncode == 2, result.output
    assert message in result.stderr
    result.assert_clean()


def test_sign_refuses_link_outside_the_folder(invoke: Callable[..., Any],
                                              tmp_path: Path) -> None:
    key = keygen(invoke, tmp_path)
    model = make_model(tmp_path / "model")
    (model / "shadow").symlink_to("/etc/hostname")
    result = invoke("sign", model, "--key", key)
    assert result.returncode == 2
    assert "shadow: symbolic link to '/etc/hostname' leads outside the model folder" in \
        result.stderr
    assert not (model / "model.sig").exists()


def test_verify_uses_the_policy_keys(invoke: Callable[..., Any], tmp_path: Path) -> None:
    key = keygen(invoke, tmp_path)
    model = make_model(tmp_path / "model")
    assert invoke("sign", model, "--key", key).returncode == 0
    (tmp_path / "bastion.toml").write_text('[sign]\nkeys = ["release.pub"]\n', encoding="utf-8")
    result = invoke("verify", "model", "-f", "json")
    assert result.returncode == 0, result.output
    assert "release.pub" in json.loads(result.stdout)["findings"][0]["message"]


def test_certificate_mode(invoke: Callable[..., Any], tmp_path: Path,
                          chain: Callable[..., Chain]) -> None:
    pki = chain()
    model = make_model(tmp_path / "model")
    signed = invoke("sign", model, "--key", pki.leaf_key, "--cert", pki.leaf_cert,
                    "--cert-chain", pki.intermediate)
    assert signed.returncode == 0, signed.output
    ok = invoke("verify", model, "--cert-chain", pki.root, "--identity", "spiffe://ml/release")
    assert ok.returncode == 0, ok.output
    other = invoke("verify", model, "--cert-chain", pki.root, "--identity", "spiffe://x")
    assert other.returncode == 1
    assert rules.CERT_UNTRUSTED.id in other.stdout


def test_real_process_exit_codes(cli: Callable[..., Any], tmp_path: Path) -> None:
    assert cli("keygen", "release.key").returncode == 0
    make_model(tmp_path / "model")
    assert cli("sign", "model", "--key", "release.key", "-q").returncode == 0
    assert cli("verify", "model", "--key", "release.pub", "-q").returncode == 0
    (tmp_path / "model" / "weights.bin").write_bytes(b"x")
    result = cli("verify", "model", "--key", "release.pub", "-q")
    assert result.returncode == 1
    result.assert_clean()


def test_cli_startup_does_not_import_the_signing_stack() -> None:
    code = ("import sys, bastion.cli; from bastion.catalogue import default_analyzers; "
            "default_analyzers(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cryptography', 'blake3', 'model_signing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_bastion_scan_reports_signature_status(invoke: Callable[..., Any],
                                               tmp_path: Path) -> None:
    key = keygen(invoke, tmp_path)
    model = make_model(tmp_path / "models" / "bert")
    assert invoke("sign", model, "--key", key).returncode == 0
    (tmp_path / "bastion.toml").write_text(
        '[sign]\nrequire = ["models/**"]\nkeys = ["release.pub"]\n', encoding="utf-8")
    ok = invoke("scan", "models", "-f", "json")
    assert ok.returncode == 0, ok.output
    signs = [f for f in json.loads(ok.stdout)["findings"] if f["rule_id"].startswith("SIGN-")]
    assert [(f["rule_id"], f["location"]["path"]) for f in signs] == [
        (rules.VERIFIED.id, "models/bert/model.sig")]
    (model / "weights.bin").write_bytes(b"poisoned")
    bad = invoke("scan", "models", "-f", "json")
    assert bad.returncode == 1
    assert rules.FILE_MODIFIED.id in {f["rule_id"] for f in json.loads(bad.stdout)["findings"]}
