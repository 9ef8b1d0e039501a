"""`bastion scan` as the CI gate for signatures: the engine runs the whole-scan check, so a
folder the policy says must be signed fails without one, passes with one, fails when edited."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _bastion(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    return subprocess.run([sys.executable, "-m", "bastion", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_scan_requires_signed_model_folders(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "m1"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "bastion.toml").write_text(
        '[sign]\nrequire = ["models/**"]\nkeys = ["keys/release.pub"]\n')
    assert _bastion(tmp_path, "keygen", "keys/release.key").returncode != 0  # no folder yet
    (tmp_path / "keys").mkdir()
    assert _bastion(tmp_path, "keygen", "keys/release.key").returncode == 0

    unsigned = _bastion(tmp_path, "scan", "models", "-q", "-f", "json")
    assert unsigned.returncode == 1
    assert '"SIGN-MISSING"' in unsigned.stdout

    assert _bastion(tmp_path, "sign", "models/m1", "--key", "keys/release.key").returncode == 0
    signed = _bastion(tmp_path, "scan", "models", "-q", "-f", "json")
    assert signed.returncode == 0, signed.stdout
    assert '"SIGN-VERIFIED"' in signed.stdout

    (folder / "weights.bin").write_bytes(b"\x01" * 1000)
    tampered = _bastion(tmp_path, "scan", "models", "-q", "-f", "json")
    assert tampered.returncode == 1
    assert '"SIGN-FILE-MODIFIED"' in tampered.stdout
    assert "Traceback" not in unsigned.stderr + signed.stderr + tampered.stderr
