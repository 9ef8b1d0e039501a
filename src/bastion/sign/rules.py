"""The rules of model signing: what a verification can find wrong with a signed model.

A model that was scanned clean is only safe if the file served is the file scanned, so every
way the folder on disk can differ from what was signed is its own rule: a file changed,
added, removed or renamed; a signature made by a key nobody trusts; a signature or signed
manifest that was altered; a signature Bastion cannot check at all (fail closed).
"""

from __future__ import annotations

from bastion.findings import Category, Severity
from bastion.rules import Rule

#: OWASP ML06 (supply chain), ML10 (model poisoning), ATLAS AML.T0010 (ML supply chain
#: compromise), and CWE-345 (insufficient verification of data authenticity).
_REFS = ("ML06", "ML10", "AML.T0010", "CWE-345")
_OMS = "https://github.com/ossf/model-signing-spec"

MISSING = Rule(
    id="SIGN-MISSING",
    title="Model folder must be signed but has no signature",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "The policy (`[sign] require`) says these files must be covered by a model signature, "
        "but no signature was found in their folder or any folder above them in the scan. "
        "Nothing shows that they are the files that were reviewed and released."
    ),
    remediation="Sign the model folder (`bastion sign FOLDER --key KEY`) where it is built, "
                "and verify it where it is admitted or served.",
    references=(*_REFS, _OMS),
)
VERIFIED = Rule(
    id="SIGN-VERIFIED",
    title="Model signature verified",
    severity=Severity.INFO,
    category=Category.INTEGRITY,
    description=(
        "The signature is valid, made by a trusted key or certificate, and every file in the "
        "folder matches the signed manifest. Reported so the signature status of each model "
        "folder appears in the report."
    ),
    references=(_OMS,),
)
FILE_MODIFIED = Rule(
    id="SIGN-FILE-MODIFIED",
    title="File differs from the signed manifest",
    severity=Severity.CRITICAL,
    category=Category.INTEGRITY,
    description=(
        "The file's content no longer has the digest that was signed: it was changed after "
        "signing (tampering, a poisoned re-upload, or corruption in transit or storage)."
    ),
    remediation="Do not load the model. Fetch it again from its source and verify it; if it "
                "was changed on purpose, review the change and sign the folder again.",
    references=(*_REFS, "CWE-494"),
)
FILE_ADDED = Rule(
    id="SIGN-FILE-ADDED",
    title="File not covered by the signature",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "The folder holds a file that was not signed. Loaders pick up extra files by name "
        "(a pickle beside the weights, a custom `*.py` module, a tokenizer file), so an added "
        "file can change what the model does without touching a signed one."
    ),
    remediation="Remove the file, or review it and sign the folder again.",
    references=_REFS,
)
FILE_REMOVED = Rule(
    id="SIGN-FILE-REMOVED",
    title="Signed file is missing",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "A file listed in the signed manifest is not in the folder. A loader may then fall "
        "back to another file or a default, so the model served is not the model signed."
    ),
    remediation="Restore the file from the signed release, or sign the folder again.",
    references=_REFS,
)
FILE_RENAMED = Rule(
    id="SIGN-FILE-RENAMED",
    title="Signed file appears under another name",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "A file with the exact content of a signed file sits at a path that was not signed, "
        "and the signed path is gone. Swapping names (two weight shards, a config and its "
        "backup) changes the model while every digest still matches."
    ),
    remediation="Restore the signed names, or review the change and sign the folder again.",
    references=_REFS,
)
FILE_UNVERIFIABLE = Rule(
    id="SIGN-FILE-UNVERIFIABLE",
    title="File in a signed folder cannot be checked",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "A path in the signed folder is a symbolic link that leads outside the folder or to a "
        "folder, a device, FIFO or socket, or cannot be read. Following it would check (or "
        "serve) content that was never signed, so it fails closed."
    ),
    remediation="Replace the link with the file itself, or remove the entry.",
    references=(*_REFS, "CWE-59"),
)
WRONG_KEY = Rule(
    id="SIGN-WRONG-KEY",
    title="Signed by a key that is not trusted",
    severity=Severity.CRITICAL,
    category=Category.INTEGRITY,
    description=(
        "The signature does not verify with any trusted public key: it was made with another "
        "key. Anyone can sign a model with a key of their own; only the key matters."
    ),
    remediation="Verify with the release key of the model's publisher; if the key changed, "
                "confirm the change out of band before trusting the new key.",
    references=(*_REFS, "CWE-347"),
)
CERT_UNTRUSTED = Rule(
    id="SIGN-CERT-UNTRUSTED",
    title="Signing certificate not trusted",
    severity=Severity.CRITICAL,
    category=Category.INTEGRITY,
    description=(
        "The signature's certificate chain does not lead to a trusted root, was not valid "
        "when it was issued, may not be used for signing, or names another identity than "
        "the one required."
    ),
    remediation="Verify against the publisher's CA certificates (`--cert-chain`) and the "
                "expected signer identity (`--identity`).",
    references=(*_REFS, "CWE-295"),
)
SIGNATURE_INVALID = Rule(
    id="SIGN-SIGNATURE-INVALID",
    title="Signature does not verify",
    severity=Severity.CRITICAL,
    category=Category.INTEGRITY,
    description=(
        "The signature names the trusted key but does not verify over the signed manifest: "
        "the manifest or the signature bytes were altered after signing."
    ),
    remediation="Treat the model as tampered: fetch the model and its signature again from "
                "the publisher.",
    references=(*_REFS, "CWE-347"),
)
SIGNATURE_MALFORMED = Rule(
    id="SIGN-SIGNATURE-MALFORMED",
    title="Signature file is corrupt",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "The signature file is not a well-formed Sigstore bundle with a DSSE envelope (bad "
        "JSON, bad base64, missing fields, too large). Nothing in it can be checked."
    ),
    remediation="Fetch the signature again, or sign the model again.",
    references=(*_REFS, _OMS),
)
MANIFEST_INVALID = Rule(
    id="SIGN-MANIFEST-INVALID",
    title="Signed manifest is not a valid model-signing statement",
    severity=Severity.HIGH,
    category=Category.INTEGRITY,
    description=(
        "The signature verifies, but what it signs is not a valid OpenSSF model-signing "
        "in-toto statement: wrong types, a root digest that does not match the listed "
        "digests, or paths that cannot name a file in the folder."
    ),
    remediation="Sign the model again with a conforming tool (`bastion sign`, "
                "`model_signing sign`).",
    references=(*_REFS, _OMS),
)
UNSUPPORTED = Rule(
    id="SIGN-UNSUPPORTED",
    title="Signature cannot be checked here",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "The signature uses a method this run cannot check: Sigstore keyless signatures need "
        "`bastion verify --sigstore` (network), an unknown hash or serialization method, a "
        "pre-1.0 model-signing format, or no trusted key or certificate is configured. The "
        "model is not vouched for, so it fails closed."
    ),
    remediation="Verify it with `bastion verify` and the right trust material, or configure "
                "`[sign] keys` / `certificates` in the policy.",
    references=(_OMS,),
)

RULES: tuple[Rule, ...] = (
    MISSING,
    VERIFIED,
    FILE_MODIFIED,
    FILE_ADDED,
    FILE_REMOVED,
    FILE_RENAMED,
    FILE_UNVERIFIABLE,
    WRONG_KEY,
    CERT_UNTRUSTED,
    SIGNATURE_INVALID,
    SIGNATURE_MALFORMED,
    MANIFEST_INVALID,
    UNSUPPORTED,
)
