"""Sign and verify: round trips for each key type, and every kind of tampering, reported."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.findings import Severity
from bastion.sign import rules
from bastion.sign.formats import encode_bundle
from bastion.sign.interface import Options, sign_model
from bastion.sign.manifest import FILES, SHARDS
from bastion.sign.verify import Trust

from .conftest import KEY_TYPES, KeyPair, rule_ids, sign, verify

MakeKey = Callable[..., KeyPair]


@pytest.mark.parametrize("kind", KEY_TYPES)
@pytest.mark.parametrize(("method", "hash_type"), [(SHARDS, "sha256"), (FILES, "sha256"),
                                                   (FILES, "blake3")])
def test_round_trip(model: Path, keypair: MakeKey, kind: str, method: str,
                    hash_type: str) -> None:
    if hash_type == "blake3":
        pytest.importorskip("blake3", reason="BLAKE3 is in the sign extra")
    pair = keypair(kind)
    signature = sign(model, pair, method=method, hash_type=hash_type)
    assert signature == model / "model.sig"
    result = verify(model, signature, pair.trust())
    assert rule_ids(result) == [rules.VERIFIED.id]
    assert result.findings[0].severity is Severity.INFO
    assert f"{pair.public}" in result.findings[0].message  # says which key signed it
    assert "5 files" in result.findings[0].message  # git metadata and the signature ignored


@pytest.fixture
def signed(model: Path, keypair: MakeKey) -> tuple[Path, Path, Trust]:
    pair = keypair("ecdsa-p256")
    return model, sign(model, pair, shard_size=1000), pair.trust()


def test_modified_file_names_the_shards_that_differ(signed: tuple[Path, Path, Trust]) -> None:
    # Technique: weight poisoning in place (same name, same size, a few bytes changed).
    model, signature, trust = signed
    data = bytearray((model / "weights.bin").read_bytes())
    data[3500] ^= 0xFF
    (model / "weights.bin").write_bytes(bytes(data))
    result = verify(model, signature, trust)
    assert rule_ids(result) == [rules.FILE_MODIFIED.id]
    finding = result.findings[0]
    assert finding.location.path == f"{model}/weights.bin"
    assert "1 of 11 shards differ (bytes 3000–4000)" in finding.message
    assert finding.severity is Severity.CRITICAL


def test_size_change_is_reported(signed: tuple[Path, Path, Trust]) -> None:
    model, signature, trust = signed
    with (model / "config.json").open("a") as handle:
        handle.write(" ")
    [finding] = verify(model, signature, trust).findings
    assert finding.rule_id == rules.FILE_MODIFIED.id
    assert "size 14 → 15 bytes" in finding.message


def test_added_removed_and_renamed_files(signed: tuple[Path, Path, Trust]) -> None:
    # Techniques: a pickle dropped beside the weights; a file deleted so a loader falls back;
    # two files swapped by name.
    model, signature, trust = signed
    (model / "extra.pkl").write_bytes(b"\x80\x04N.")
    (model / "tokenizer" / "merges.txt").unlink()
    (model / "tokenizer" / "vocab.txt").rename(model / "tokenizer" / "vocab.bak")
    findings = {f.rule_id: f for f in verify(model, signature, trust).findings}
    assert sorted(findings) == sorted([rules.FILE_ADDED.id, rules.FILE_REMOVED.id,
                                       rules.FILE_RENAMED.id])
    assert findings[rules.FILE_ADDED.id].location.path.endswith("/extra.pkl")
    assert "tokenizer/merges.txt is signed but missing" in findings[rules.FILE_REMOVED.id].message
    renamed = findings[rules.FILE_RENAMED.id]
    assert renamed.message == "tokenizer/vocab.bak is the signed file tokenizer/vocab.txt, renamed"
    assert renamed.properties["signed_path"] == "tokenizer/vocab.txt"


def test_swapped_names_are_two_modifications(signed: tuple[Path, Path, Trust]) -> None:
    model, signature, trust = signed
    a, b = model / "tokenizer" / "vocab.txt", model / "tokenizer" / "merges.txt"
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    assert rule_ids(verify(model, signature, trust)) == [rules.FILE_MODIFIED.id] * 2


def test_empty_files_are_covered_in_shards_mode(signed: tuple[Path, Path, Trust]) -> None:
    # Technique: an empty __init__.py turns a folder into an importable package; shards carry
    # no digest for empty files, so Bastion's signed file list must cover them.
    model, signature, trust = signed
    (model / "tokenizer" / "__init__.py").write_bytes(b"")
    (model / "__init__.py").unlink()
    result = verify(model, signature, trust)
    assert rule_ids(result) == [rules.FILE_ADDED.id, rules.FILE_REMOVED.id]
    assert all(f.severity is Severity.HIGH for f in result.findings)


def test_ignored_paths_do_not_count(model: Path, keypair: MakeKey) -> None:
    pair = keypair()
    signature = sign(model, pair, ignore=("notes",))
    (model / ".git" / "HEAD").write_text("changed", encoding="utf-8")
    (model / "notes").mkdir()
    (model / "notes" / "todo.txt").write_text("x", encoding="utf-8")
    assert rule_ids(verify(model, signature, pair.trust())) == [rules.VERIFIED.id]


def test_signature_outside_the_folder(model: Path, keypair: MakeKey, tmp_path: Path) -> None:
    pair = keypair()
    out = tmp_path / "release.sig"
    sign_model(model, pair.private, output=out)
    assert rule_ids(verify(model, out, pair.trust())) == [rules.VERIFIED.id]


def test_single_file_model(model: Path, keypair: MakeKey) -> None:
    pair = keypair("ecdsa-p384")
    target = model / "weights.bin"
    signature = sign_model(target, pair.private).signature
    assert signature == model / "weights.bin.sig"
    assert rule_ids(verify(target, signature, pair.trust())) == [rules.VERIFIED.id]
    target.write_bytes(b"poisoned")
    [finding] = verify(target, signature, pair.trust()).findings
    assert (finding.rule_id, finding.location.path) == (rules.FILE_MODIFIED.id, str(target))


def test_wrong_key(signed: tuple[Path, Path, Trust], keypair: MakeKey) -> None:
    # Technique: the attacker re-signs a tampered model with a key of their own.
    model, signature, _ = signed
    other = keypair("ecdsa-p256", name="other")
    [finding] = verify(model, signature, other.trust()).findings
    assert finding.rule_id == rules.WRONG_KEY.id
    assert "signed by another key" in finding.message


def test_right_key_among_several_trusted(signed: tuple[Path, Path, Trust],
                                         keypair: MakeKey) -> None:
    model, signature, trust = signed
    other = keypair("ed25519", name="other")
    both = Trust(keys=(*other.trust().keys, *trust.keys))
    [finding] = verify(model, signature, both).findings
    assert finding.rule_id == rules.VERIFIED.id
    assert trust.keys[0].source in finding.message


def edit_bundle(signature: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(signature.read_bytes())
    change(data)
    signature.write_text(json.dumps(data), encoding="utf-8")


def test_corrupted_signature_bytes(signed: tuple[Path, Path, Trust]) -> None:
    model, signature, trust = signed

    def flip(data: dict) -> None:
        raw = bytearray(base64.b64decode(data["dsseEnvelope"]["signatures"][0]["sig"]))
        raw[-3] ^= 0x01
        data["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()

    edit_bundle(signature, flip)
    [finding] = verify(model, signature, trust).findings
    assert finding.rule_id == rules.SIGNATURE_INVALID.id
    assert "altered" in finding.message


def test_altered_signed_manifest(signed: tuple[Path, Path, Trust]) -> None:
    # Technique: add the planted file to the signed list and keep the old signature.
    model, signature, trust = signed
    (model / "extra.pkl").write_bytes(b"\x80\x04N.")

    def add(data: dict) -> None:
        payload = json.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))
        payload["predicate"]["bastion"]["files"]["extra.pkl"] = 4
        data["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()

    edit_bundle(signature, add)
    assert rule_ids(verify(model, signature, trust)) == [rules.SIGNATURE_INVALID.id]


def test_key_hint_is_only_a_hint(signed: tuple[Path, Path, Trust], keypair: MakeKey) -> None:
    model, signature, trust = signed
    edit_bundle(signature, lambda d: d["verificationMaterial"]["publicKey"].update(hint="00"))
    assert rule_ids(verify(model, signature, trust)) == [rules.VERIFIED.id]
    edit_bundle(signature, lambda d: d["verificationMaterial"]["publicKey"].pop("hint"))
    other = keypair("ecdsa-p256", name="other")
    [finding] = verify(model, signature, other.trust()).findings
    assert finding.rule_id == rules.WRONG_KEY.id
    assert "names no key" in finding.message


@pytest.mark.parametrize("content", [b"", b"{", b'{"mediaType": 1}', b"\x00" * 64])
def test_corrupt_signature_file(signed: tuple[Path, Path, Trust], content: bytes) -> None:
    model, signature, trust = signed
    signature.write_bytes(content)
    [finding] = verify(model, signature, trust).findings
    assert finding.rule_id == rules.SIGNATURE_MALFORMED.id
    assert finding.message.startswith("the signature file is corrupt")


def test_manifest_signed_but_invalid(model: Path, keypair: MakeKey) -> None:
    # A signer that signs garbage: authentic, but nothing in it can be checked.
    from bastion.sign.formats import pae
    from bastion.sign.keys import key_hint, load_private_key, sign_bytes

    pair = keypair()
    key = load_private_key(pair.private)
    payload = b'{"_type": "https://in-toto.io/Statement/v1", "subject": []}'
    bundle = encode_bundle(payload, sign_bytes(key, pae(payload)),
                           key_hint=key_hint(key.public_key()))
    (model / "model.sig").write_bytes(bundle)
    [finding] = verify(model, model / "model.sig", pair.trust()).findings
    assert finding.rule_id == rules.MANIFEST_INVALID.id


def test_no_trust_is_unsupported_not_verified(signed: tuple[Path, Path, Trust]) -> None:
    model, signature, _ = signed
    [finding] = verify(model, signature, Trust()).findings
    assert finding.rule_id == rules.UNSUPPORTED.id


def test_keyless_bundle_without_sigstore_is_unsupported(model: Path) -> None:
    raw = json.loads(encode_bundle(b"{}", b"s", key_hint="x"))
    raw["verificationMaterial"] = {"certificate": {"rawBytes": "AAAA"},
                                   "tlogEntries": [{"logIndex": "1"}]}
    (model / "model.sig").write_text(json.dumps(raw), encoding="utf-8")
    [finding] = verify(model, model / "model.sig", Trust()).findings
    assert finding.rule_id == rules.UNSUPPORTED.id
    assert "--sigstore" in finding.message


def test_link_planted_after_signing_is_unverifiable(signed: tuple[Path, Path, Trust],
                                                    tmp_path: Path) -> None:
    # Technique: replace a signed file with a link to outside content (CWE-59).
    model, signature, trust = signed
    outside = tmp_path / "other-weights.bin"
    outside.write_bytes((model / "weights.bin").read_bytes())  # even identical content
    (model / "weights.bin").unlink()
    (model / "weights.bin").symlink_to(outside)
    (model / "alias.txt").symlink_to("config.json")  # in-folder, but signed without links
    findings = verify(model, signature, trust).findings
    assert sorted((f.rule_id, f.location.path.rsplit("/", 1)[1]) for f in findings) == [
        (rules.FILE_UNVERIFIABLE.id, "alias.txt"), (rules.FILE_UNVERIFIABLE.id, "weights.bin")]


def test_fifo_in_signed_folder_does_not_hang(signed: tuple[Path, Path, Trust]) -> None:
    model, signature, trust = signed
    (model / "config.json").unlink()
    os.mkfifo(model / "config.json")
    findings = verify(model, signature, trust).findings
    assert [f.rule_id for f in findings] == [rules.FILE_UNVERIFIABLE.id]


def test_unreadable_file_is_unverifiable(signed: tuple[Path, Path, Trust],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads every file, so the permission error is injected where files are opened.
    model, signature, trust = signed
    real_open = os.open

    def deny(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if os.fspath(path).endswith("config.json"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr("bastion.sign.hashing.os.open", deny)
    [finding] = verify(model, signature, trust).findings
    assert finding.rule_id == rules.FILE_UNVERIFIABLE.id
    assert finding.message == "config.json: cannot open: Permission denied"


def test_blake3_needs_its_package(monkeypatch: pytest.MonkeyPatch, model: Path,
                                  keypair: MakeKey) -> None:
    import sys

    from bastion.errors import UsageError

    monkeypatch.setitem(sys.modules, "blake3", None)
    with pytest.raises(UsageError, match="blake3"):
        sign_model(model, keypair().private, options=Options(method=FILES, hash_type="blake3"))


def test_unusual_but_legal_names_round_trip(model: Path, keypair: MakeKey) -> None:
    # Backslashes, colons (model-signing's shard separator), spaces and non-ASCII letters
    # are all legal POSIX names: a signer must not produce what its verifier refuses.
    for name in ("back\\slash.bin", "a:b:0:1.bin", "spaced name.txt", "données.json"):
        (model / name).write_bytes(name.encode())
    pair = keypair()
    for method in (SHARDS, FILES):
        signature = sign(model, pair, method=method)
        assert rule_ids(verify(model, signature, pair.trust())) == [rules.VERIFIED.id]
    (model / "a:b:0:1.bin").write_bytes(b"changed")
    [finding] = verify(model, signature, pair.trust()).findings
    assert finding.location.path.endswith("/a:b:0:1.bin")


# -- hashing started before the signature is checked (the fast path of `bastion verify`) ------


def test_early_hashing_gives_the_same_verdicts(signed: tuple[Path, Path, Trust],
                                               keypair: MakeKey) -> None:
    import threading

    from bastion.sign.early import start_early
    from bastion.sign.verify import verify_model

    model, signature, trust = signed

    def both(t: Trust) -> tuple[list[str], list[str]]:
        early = start_early(model, signature, workers=2)
        assert early is not None
        fast = verify_model(model, signature, t, workers=2, early=early)
        assert not [th for th in threading.enumerate() if th.name.startswith("bastion-hash")]
        return rule_ids(fast), rule_ids(verify(model, signature, t))

    fast, slow = both(trust)
    assert fast == slow == [rules.VERIFIED.id]
    other = keypair("ecdsa-p256", name="other").trust()
    fast, slow = both(other)
    assert fast == slow == [rules.WRONG_KEY.id]
    data = bytearray((model / "weights.bin").read_bytes())
    data[10] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    fast, slow = both(trust)
    assert fast == slow == [rules.FILE_MODIFIED.id]


def test_early_hashing_trusts_nothing_the_signature_does_not_verify(
        signed: tuple[Path, Path, Trust]) -> None:
    """A signature whose statement was edited (other hashing settings) is refused, though the
    early hashing followed the edited settings; an early start for another signature file is
    ignored; a hostile shard size starts nothing."""
    from bastion.sign.early import start_early
    from bastion.sign.verify import verify_model

    model, signature, trust = signed
    bundle = json.loads(signature.read_text())
    envelope = bundle["dsseEnvelope"]
    original = base64.b64decode(envelope["payload"]).decode()

    def edit(shard_size: int) -> None:
        statement = json.loads(original.replace("sharded-1000", f"sharded-{shard_size}"))
        statement["predicate"]["serialization"]["shard_size"] = shard_size
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        edited.write_text(json.dumps(bundle))

    edited = model.parent / "edited.sig"
    edit(500)
    early = start_early(model, edited, workers=2)
    assert early is not None
    assert early.serialization.shard_size == 500
    result = verify_model(model, edited, trust, workers=2, early=early)
    assert rule_ids(result) == [rules.SIGNATURE_INVALID.id]

    early = start_early(model, edited, workers=2)  # for edited.sig, used with the original
    result = verify_model(model, signature, trust, workers=2, early=early)
    assert rule_ids(result) == [rules.VERIFIED.id]

    os.truncate(model / "weights.bin", 1 << 40)  # sparse: a terabyte of nothing
    edit(1)  # 10^12 shards, if believed
    assert start_early(model, edited, workers=2) is None
