"""``bastion scan`` with a ``[sign]`` policy: signature status, tampering, missing signatures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.analyzer import Registry
from bastion.engine import scan_paths
from bastion.errors import PolicyError
from bastion.findings import Finding, Location
from bastion.policy import DEFAULT, Policy, Sign, parse_policy
from bastion.rules import ANALYZER_ERROR
from bastion.sign import rules
from bastion.sign.analyzer import FOLDER_CHECKS, SignatureAnalyzer, required_signatures
from bastion.sign.interface import sign_model
from bastion.walk import FileEntry, walk

from .conftest import Chain, KeyPair, make_model

REGISTRY = Registry([SignatureAnalyzer()])


def policy(**sign: object) -> Policy:
    return Policy(sign=Sign(**sign))  # type: ignore[arg-type]


def scan(root: Path, pol: Policy) -> list[Finding]:
    """What ``bastion scan`` reports: the per-file pass, then the folder checks."""
    report = scan_paths([root], pol, registry=REGISTRY)
    paths = [item.display for item in walk([str(root)], pol) if isinstance(item, FileEntry)]
    found = list(report.findings)
    for check in FOLDER_CHECKS:
        found.extend(check(paths, found, pol))
    return found


def ids(findings: list[Finding]) -> list[str]:
    return sorted(f.rule_id for f in findings)


@pytest.fixture
def tree(tmp_path: Path, keypair: Callable[..., KeyPair]) -> tuple[Path, KeyPair]:
    """models/bert (signed), models/gpt (unsigned), models/one.bin (signed single file)."""
    pair = keypair("ecdsa-p256")
    models = tmp_path / "models"
    sign_model(make_model(models / "bert"), pair.private)
    make_model(models / "gpt")
    (models / "one.bin").write_bytes(b"\x00" * 100)
    sign_model(models / "one.bin", pair.private)
    return models, pair


def test_signature_is_claimed_by_content_not_name(tree: tuple[Path, KeyPair]) -> None:
    models, _ = tree
    renamed = models / "bert" / "release-signature.json"
    (models / "bert" / "model.sig").rename(renamed)
    from bastion.analyzer import Target

    target = Target.from_bytes(renamed.read_bytes(), Location(path=str(renamed)))
    assert SignatureAnalyzer().claims(target)
    config = Target.from_bytes(b'{"hidden": 8}', Location(path="model.sig"))
    assert not SignatureAnalyzer().claims(config)


def test_without_a_sign_policy_signatures_are_left_alone(tree: tuple[Path, KeyPair]) -> None:
    models, _ = tree
    assert scan(models, DEFAULT) == []


def test_scan_reports_status_of_each_signed_model(tree: tuple[Path, KeyPair]) -> None:
    models, pair = tree
    found = scan(models, policy(keys=(str(pair.public),)))
    verified = [f for f in found if f.rule_id == rules.VERIFIED.id]
    assert sorted(f.properties["signed_folder"] for f in verified) == [
        f"{models}/bert", f"{models}/one.bin"]
    assert all(str(pair.public) in f.message for f in verified)  # by which key
    assert ids(found) == [rules.VERIFIED.id] * 2


def test_scan_reports_tampering(tree: tuple[Path, KeyPair]) -> None:
    models, pair = tree
    (models / "bert" / "weights.bin").write_bytes(b"poison")
    (models / "one.bin").write_bytes(b"\x01" * 100)
    (models / "bert" / "hook.pkl").write_bytes(b"\x80\x04N.")
    found = scan(models, policy(keys=(str(pair.public),)))
    assert ids(found) == sorted([rules.FILE_MODIFIED.id, rules.FILE_MODIFIED.id,
                                 rules.FILE_ADDED.id])
    assert {f.location.path for f in found} == {
        f"{models}/bert/weights.bin", f"{models}/one.bin", f"{models}/bert/hook.pkl"}


def test_scan_with_an_untrusted_key(tree: tuple[Path, KeyPair],
                                    keypair: Callable[..., KeyPair]) -> None:
    models, _ = tree
    other = keypair("ed25519", name="other")
    found = scan(models, policy(keys=(str(other.public),)))
    assert ids(found) == [rules.WRONG_KEY.id] * 2


def test_required_but_unsigned_folder_is_reported(tree: tuple[Path, KeyPair]) -> None:
    models, pair = tree
    found = scan(models, policy(require=("models/**",), keys=(str(pair.public),)))
    missing = [f for f in found if f.rule_id == rules.MISSING.id]
    # One finding for the model folder and its subfolder; git metadata is never required.
    [finding] = missing
    assert finding.location.path == f"{models}/gpt"
    assert finding.message == (
        f"5 files in {models}/gpt must be signed (policy [sign] require 'models/**') but no "
        "signature covers them: __init__.py, config.json, tokenizer/merges.txt, "
        "tokenizer/vocab.txt, weights.bin")
    assert ids(found).count(rules.VERIFIED.id) == 2


def test_required_with_no_trusted_key_fails_closed(tree: tuple[Path, KeyPair]) -> None:
    models, _ = tree
    found = scan(models, policy(require=("*.bin",)))
    # The two signatures are met (so their files are not "missing") but cannot be checked.
    assert ids(found).count(rules.UNSUPPORTED.id) == 2
    assert [f.location.path for f in found if f.rule_id == rules.MISSING.id] == [
        f"{models}/gpt"]


def test_required_signatures_reads_only_the_walk_and_findings() -> None:
    verified = rules.VERIFIED.finding(
        Location(path="m/a/model.sig"),
        "ok", properties={"signed_folder": "m/a"})
    crashed = ANALYZER_ERROR.finding(
        Location(path="m/b/model.sig"),
        "boom", properties={"analyzer": SignatureAnalyzer.name})
    paths = ["m/a/w.bin", "m/a/model.sig", "m/b/w.bin", "m/b/model.sig", "m/c/w.bin",
             "m/c/x.bin", "other/w.bin"]
    [missing] = required_signatures(paths, [verified, crashed], policy(require=("m/**",)))
    assert missing.location.path == "m/c"
    assert missing.properties["files"] == ["m/c/w.bin", "m/c/x.bin"]
    assert required_signatures(paths, [], DEFAULT) == []


def test_bad_key_in_policy_is_an_analyzer_error_naming_it(tree: tuple[Path, KeyPair]) -> None:
    models, _ = tree
    found = scan(models, policy(keys=("keys/missing.pub",)))
    assert ids(found) == [ANALYZER_ERROR.id] * 2
    assert "policy [sign]: public key keys/missing.pub not found" in found[0].message


def test_policy_sign_section_is_validated() -> None:
    parsed = parse_policy({"sign": {"require": ["models/**"], "keys": ["k.pub"],
                                    "certificates": ["ca.pem"], "identity": "ci@example"}})
    assert parsed.sign == Sign(("models/**",), ("k.pub",), ("ca.pem",), "ci@example")
    with pytest.raises(PolicyError, match=r"sign\.keyz: unknown key"):
        parse_policy({"sign": {"keyz": ["k.pub"]}})
    with pytest.raises(PolicyError, match=r"sign\.require: expected a list of strings"):
        parse_policy({"sign": {"require": "models/**"}})


def test_scanning_part_of_a_signed_folder_says_where_the_signature_is(
        tree: tuple[Path, KeyPair]) -> None:
    # A pre-commit hook passes only the changed files: the folder's signature is not walked,
    # so the files cannot be vouched for, and the finding says which signature to check.
    models, pair = tree
    target = models / "bert" / "weights.bin"
    found = scan(target, policy(require=("*.bin",), keys=(str(pair.public),)))
    [missing] = found
    assert missing.rule_id == rules.MISSING.id
    assert f"{models}/bert/model.sig was not part of this scan" in missing.message


def test_only_certificates_trusted_but_signed_with_a_bare_key(
        tree: tuple[Path, KeyPair], chain: Callable[..., Chain]) -> None:
    models, _ = tree
    pki = chain()
    found = scan(models / "bert", policy(certificates=(str(pki.root),)))
    assert [f.message for f in found] == [
        "signed with a bare key, but only CA certificates are trusted (give the signer's "
        "public key: --key, or [sign] keys)"]
