"""The bundle and statement codecs: the DSSE encoding, and hostile signature files."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bastion.sign.formats import (
    MAX_BUNDLE_SIZE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    FormatError,
    UnsupportedError,
    encode_bundle,
    pae,
    parse_bundle,
    parse_statement,
    root_digest,
    sniff,
    statement,
    statement_serialization,
)
from bastion.sign.manifest import SHARDS, Manifest, ManifestError, Resource, Serialization

DIGEST = bytes(range(32))


def test_pae_matches_the_dsse_specification_vector() -> None:
    # From the DSSE v1 protocol document.
    assert pae(b"hello world", "http://example.com/HelloWorld") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def make_manifest(**changes: Any) -> Manifest:
    serialization = Serialization(SHARDS, "sha256", 1000, False, (".git", "model.sig"))
    resources = (Resource("b/w.bin", DIGEST, "sha256-sharded-1000", 0, 1000),
                 Resource("a.txt", DIGEST[::-1], "sha256-sharded-1000", 0, 5))
    fields: dict[str, Any] = {"model_name": "m", "serialization": serialization,
                              "resources": resources,
                              "sizes": {"a.txt": 5, "b/w.bin": 1000, "empty": 0}}
    fields.update(changes)
    return Manifest(**fields)


def body(manifest: Manifest | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(statement(manifest or make_manifest()))
    return data


def encoded(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def test_statement_round_trips_and_sorts_resources() -> None:
    data = body()
    assert data["_type"] == STATEMENT_TYPE
    assert data["predicateType"] == PREDICATE_TYPE
    assert [r["name"] for r in data["predicate"]["resources"]] == ["a.txt:0:5", "b/w.bin:0:1000"]
    assert data["predicate"]["serialization"]["shard_size"] == 1000  # an integer, not 1000.0
    parsed = parse_statement(encoded(data))
    assert parsed.sizes == {"a.txt": 5, "b/w.bin": 1000, "empty": 0}
    assert parsed.by_path()["empty"] == ()
    assert parsed.serialization.ignore_paths == (".git", "model.sig")


def test_statement_serialization_reads_the_settings_alone() -> None:
    # What the verify fast path starts hashing from: the same settings parse_statement
    # finds, without parsing (or trusting) the resources, and the same refusals.
    data = body()
    assert statement_serialization(encoded(data)) == parse_statement(encoded(data)).serialization
    data["predicate"]["resources"] = "not even a list"
    assert statement_serialization(encoded(data)).shard_size == 1000
    data["predicate"]["serialization"]["method"] = "zip"
    with pytest.raises(UnsupportedError):
        statement_serialization(encoded(data))
    for broken in (b"[]", b"{}", b'{"predicate": {"serialization": 1}}', b"\xff"):
        with pytest.raises(ManifestError):
            statement_serialization(broken)


def test_float_shard_size_from_model_signing_is_accepted() -> None:
    data = body()
    data["predicate"]["serialization"]["shard_size"] = 1000.0
    assert parse_statement(encoded(data)).serialization.shard_size == 1000
    data["predicate"]["serialization"]["shard_size"] = 1000.5
    with pytest.raises(ManifestError, match="whole number"):
        parse_statement(encoded(data))


def test_edited_resource_list_breaks_the_root_digest() -> None:
    # Technique: drop a resource from the list (e.g. to hide an added file) without re-signing
    # -- only possible for a verifier that skips the subject digest check.
    data = body()
    data["predicate"]["resources"].pop()
    with pytest.raises(ManifestError, match="subject digest"):
        parse_statement(encoded(data))


@pytest.mark.parametrize("name", ["../escape.bin:0:5", "/etc/passwd:0:5", "a/./b:0:5",
                                  "a//b:0:5", "a/../b:0:5"])
def test_resource_paths_must_name_files_inside_the_folder(name: str) -> None:
    # Technique: path traversal in a signed manifest (CWE-22); Bastion never opens these
    # paths, and refuses a manifest that holds them.
    data = body()
    data["predicate"]["resources"][0]["name"] = name
    digests = [bytes.fromhex(r["digest"]) for r in data["predicate"]["resources"]]
    data["subject"][0]["digest"]["sha256"] = root_digest(
        [Resource("x", d, "") for d in digests]).hex()
    with pytest.raises(ManifestError):
        parse_statement(encoded(data))


@pytest.mark.parametrize(("path", "value", "message"), [
    (("predicate", "serialization", "method"), "tensors", "unknown serialization"),
    (("predicate", "serialization", "hash_type"), "md5", "unknown hash"),
    (("predicateType",), "https://model_signing/Digests/v0.1", "pre-1.0"),
])
def test_unsupported_statements_are_reported_as_such(path: tuple[str, ...], value: str,
                                                     message: str) -> None:
    data = body()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(UnsupportedError, match=message):
        parse_statement(encoded(data))


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"),
    lambda d: d.update(subject=[]),
    lambda d: d["predicate"]["resources"][0].update(digest="zz"),
    lambda d: d["predicate"]["resources"][0].update(digest="00"),
    lambda d: d["predicate"]["resources"][0].update(algorithm="sha256"),
    lambda d: d["predicate"]["serialization"].update(allow_symlinks="false"),
    lambda d: d["predicate"]["serialization"].update(ignore_paths=["../up"]),
    lambda d: d["predicate"]["bastion"]["files"].update({"a.txt": 6}),
    lambda d: d["predicate"]["bastion"]["files"].pop("b/w.bin"),
    lambda d: d["predicate"]["bastion"]["files"].update({"ghost": 7}),
    lambda d: d["predicate"]["bastion"]["files"].update({"a.txt": True}),
], ids=["type", "subjects", "hex", "digest-size", "algorithm", "bool", "ignore", "size",
        "no-size", "unlisted", "bool-size"])
def test_invalid_statements_are_refused(mutate: Any) -> None:
    data = body()
    mutate(data)
    with pytest.raises(ManifestError):
        parse_statement(encoded(data))


def test_duplicate_json_keys_are_refused() -> None:
    # Technique: parser differential -- two verifiers reading different values of one key.
    text = statement(make_manifest()).replace(b'"_type"', b'"_type":"x","_type"', 1)
    with pytest.raises(ManifestError, match="duplicate key"):
        parse_statement(text)


def bundle(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode_bundle(b"{}", b"sig", key_hint="ab"))
    data.update(changes)
    return data


def test_bundle_round_trip_and_sniff() -> None:
    raw = encode_bundle(b"payload", b"\x01\x02", key_hint="abcd")
    assert sniff(raw[:4096])
    parsed = parse_bundle(raw)
    assert (parsed.payload, parsed.signatures, parsed.kind, parsed.key_hint) == \
        (b"payload", (b"\x01\x02",), "key", "abcd")
    chain = parse_bundle(encode_bundle(b"p", b"s", certificates=[b"leaf", b"ca"]))
    assert (chain.kind, chain.certificates) == ("chain", (b"leaf", b"ca"))


def test_sniff_ignores_other_json() -> None:
    assert not sniff(b'{"name": "config", "hidden": 8}')
    assert not sniff(b"\x80\x04\x95 pickle")


@pytest.mark.parametrize(("raw", "message"), [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (json.dumps({"mediaType": "application/json"}).encode(), "not a Sigstore bundle"),
    (encoded(bundle(verificationMaterial={})), "no public key"),
    (encoded(bundle(dsseEnvelope={"payload": "!!!", "payloadType": "x", "signatures": [
        {"sig": "AA=="}]})), "not valid base64"),
    (encoded(bundle(dsseEnvelope={"payload": "", "payloadType": "x", "signatures": []})),
     "0 signatures"),
    (encoded(bundle(dsseEnvelope={"payload": "", "payloadType": "x",
                                  "signatures": [{"sig": ""}] * 17})), "17 signatures"),
    (encoded(bundle(dsseEnvelope={"payload": "", "payloadType": 5, "signatures": []})),
     "payloadType is missing or not a string"),
    (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "x": NaN}', "NaN"),
], ids=["text", "binary", "deep", "media", "material", "base64", "no-sig", "many-sigs",
        "type", "nan"])
def test_malformed_bundles_are_format_errors(raw: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_bundle(raw)


def test_oversized_bundle_is_refused_unparsed() -> None:
    with pytest.raises(FormatError, match="over the"):
        parse_bundle(b" " * (MAX_BUNDLE_SIZE + 1))


def test_message_signature_bundle_is_unsupported() -> None:
    data = bundle()
    del data["dsseEnvelope"]
    data["messageSignature"] = {"signature": base64.b64encode(b"x").decode()}
    with pytest.raises(UnsupportedError, match="no DSSE envelope"):
        parse_bundle(encoded(data))


def test_keyless_bundle_is_recognised_as_sigstore() -> None:
    data = bundle(verificationMaterial={"certificate": {"rawBytes": "AAAA"},
                                        "tlogEntries": [{"logIndex": "1"}]})
    assert parse_bundle(encoded(data)).kind == "sigstore"


def test_base64_is_decoded_exactly_as_the_standard_strict_decoder_does() -> None:
    """formats decodes with binascii (no ``base64`` import before hashing): the same
    texts must decode to the same bytes, and the same texts be refused."""
    import binascii
    import random

    from bastion.sign.formats import _b64

    rnd = random.Random(5)
    texts = ["", "QQ==", "QQ", "QQ=", "QUJD\n", "=QUJD", "QQ==QQ==", "QUJD====", "-_-_", "é",
             *("".join(rnd.choice("ABab09+/=\n -_é") for _ in range(rnd.randint(0, 12)))
               for _ in range(5000))]
    for text in texts:
        try:
            expected: bytes | None = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            expected = None
        try:
            got: bytes | None = _b64(text, "payload")
        except FormatError:
            got = None
        assert got == expected, text
    assert _b64(base64.b64encode(bytes(range(256))).decode(), "x") == bytes(range(256))
