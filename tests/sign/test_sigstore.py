"""Sigstore keyless signing is delegated to model-signing; tested here without the network.

The Sigstore client (OIDC, Fulcio, Rekor, the TUF trust root) is replaced by stand-ins at the
one seam model-signing has for it (its ``sign_sigstore.Signer`` and ``Verifier``), so what is
tested is Bastion's side: the hashing settings handed over, the signature's own path ignored,
the verified payload compared with the folder like any other, failures as findings, and a
clear error when the library is not installed.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bastion.errors import UsageError
from bastion.sign import rules
from bastion.sign.formats import PAYLOAD_TYPE
from bastion.sign.verify import Trust, verify_model

from .conftest import make_model

sign_sigstore_module = pytest.importorskip("model_signing._signing.sign_sigstore",
                                           reason="model-signing is a test extra")


class FakeSignature:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def write(self, path: Path) -> None:
        bundle = {
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": "AAAA"},
                                     "tlogEntries": [{"logIndex": "1"}]},
            "dsseEnvelope": {"payload": base64.b64encode(self.payload).decode(),
                             "payloadType": PAYLOAD_TYPE,
                             "signatures": [{"sig": "AAAA", "keyid": ""}]},
        }
        path.write_text(json.dumps(bundle), encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> FakeSignature:
        data = json.loads(path.read_bytes())
        return cls(base64.b64decode(data["dsseEnvelope"]["payload"]))


class FakeSigner:
    created: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        FakeSigner.created = kwargs

    def sign(self, payload: Any) -> FakeSignature:
        from google.protobuf import json_format

        return FakeSignature(json_format.MessageToJson(payload.statement.pb).encode())


class FakeVerifier:
    created: ClassVar[dict[str, Any]] = {}
    fail: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        FakeVerifier.created = kwargs

    def _verify_signed_content(self, signature: FakeSignature) -> tuple[str, bytes]:
        if FakeVerifier.fail:
            raise ValueError(FakeVerifier.fail)
        return PAYLOAD_TYPE, signature.payload


@pytest.fixture
def fake_sigstore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sign_sigstore_module, "Signer", FakeSigner)
    monkeypatch.setattr(sign_sigstore_module, "Verifier", FakeVerifier)
    monkeypatch.setattr(sign_sigstore_module, "Signature", FakeSignature)
    FakeVerifier.fail = None


@pytest.mark.usefixtures("fake_sigstore")
@pytest.mark.parametrize("method", ["shards", "files"])
def test_keyless_sign_and_verify_through_model_signing(invoke: Callable[..., Any],
                                                       tmp_path: Path, method: str) -> None:
    model = make_model(tmp_path / "model")
    (model / "__init__.py").unlink()  # shards mode cannot record empty files
    signed = invoke("sign", model, "--sigstore", "--staging", "--identity-token", "tok",
                    "--method", method, "--shard-size", "4096")
    assert signed.returncode == 0, signed.output
    assert FakeSigner.created["use_staging"] is True
    assert FakeSigner.created["identity_token"] == "tok"
    payload = json.loads(FakeSignature.read(model / "model.sig").payload)
    assert "model.sig" in payload["predicate"]["serialization"]["ignore_paths"]

    ok = invoke("verify", model, "--sigstore", "--identity", "ci@example.com", "--issuer",
                "https://issuer.example", "-f", "json")
    assert ok.returncode == 0, ok.output
    finding = json.loads(ok.stdout)["findings"][0]
    assert finding["rule_id"] == rules.VERIFIED.id
    assert "Sigstore identity ci@example.com" in finding["message"]
    assert FakeVerifier.created["identity"] == "ci@example.com"
    assert FakeVerifier.created["oidc_issuer"] == "https://issuer.example"

    (model / "config.json").write_text("{}", encoding="utf-8")
    bad = invoke("verify", model, "--sigstore", "--identity", "ci@example.com", "--issuer",
                 "https://issuer.example", "-f", "json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["findings"][0]["rule_id"] == rules.FILE_MODIFIED.id


@pytest.mark.usefixtures("fake_sigstore")
def test_failed_sigstore_verification_is_a_finding(tmp_path: Path) -> None:
    from bastion.sign.sigstore import sigstore_check

    model = make_model(tmp_path / "model")
    FakeSignature(b"{}").write(model / "model.sig")
    FakeVerifier.fail = "certificate identity mismatch"
    trust = Trust(sigstore=sigstore_check("a@b", "https://issuer"))
    [finding] = verify_model(model, model / "model.sig", trust).findings
    assert finding.rule_id == rules.CERT_UNTRUSTED.id
    assert "certificate identity mismatch" in finding.message


def test_without_model_signing_the_error_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, invoke: Callable[..., Any], tmp_path: Path) -> None:
    for name in [m for m in sys.modules if m.startswith("model_signing")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "model_signing", None)
    make_model(tmp_path / "model")
    result = invoke("sign", "model", "--sigstore")
    assert result.returncode == 2
    assert "needs the model-signing library" in result.stderr
    assert "bastion-mlsec[sign]" in result.stderr
    from bastion.sign.sigstore import sigstore_check

    with pytest.raises(UsageError, match="model-signing"):
        sigstore_check("a@b", "https://issuer")
