"""The library entry points: sign a model, verify a model.

``sign_model`` walks and hashes the model, builds the OpenSSF model-signing statement, signs
its DSSE encoding with an ECDSA or Ed25519 key (optionally with an X.509 chain) and writes
the Sigstore bundle atomically. It refuses, with a clear error, anything a signature cannot
honestly cover. ``verify_model`` (in :mod:`bastion.sign.verify`) turns every problem into a
finding. Both read nothing but the model's bytes: no model is ever loaded.

Like :mod:`bastion.sign.manifest`, this module is loaded before ``bastion sign`` starts
hashing: no ``pathlib`` or ``dataclasses`` at run time (named tuples, and ``os.path`` on the
paths given until the hashing threads run).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from bastion.errors import UsageError
from bastion.files import replace_atomic
from bastion.records import NamedTuple
from bastion.sign.hashing import Pending, blake3_available, start_hashing
from bastion.sign.manifest import (
    DEFAULT_IGNORES,
    DEFAULT_SHARD_SIZE,
    FILES,
    HASH_TYPES,
    SHARDS,
    Manifest,
    ManifestError,
    Serialization,
    default_signature_name,
    model_name,
    normalise_ignore,
    relative_inside,
    walk_model,
)
from bastion.sign.manifest import default_signature as default_signature

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (bastion.records)

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from bastion.sign.keys import PrivateKey
    from bastion.sign.verify import Result, Trust, verify_model


__all__ = ["Options", "Result", "Signed", "Trust", "build_manifest", "default_signature",
           "sign_model", "verify_model"]


class Options(NamedTuple):
    """How to hash: the method, the hash, the shard size, what to ignore, how many workers,
    and whether they may be forked processes (see :class:`bastion.sign.hashing.ForkedPending`:
    the command line's choice, for a process with nothing else running)."""

    method: str = SHARDS
    hash_type: str = "sha256"
    shard_size: int = DEFAULT_SHARD_SIZE
    ignore: tuple[str, ...] = ()
    ignore_git: bool = True
    workers: int | None = None
    processes: bool = False

    def check(self) -> None:
        if self.method not in (FILES, SHARDS):
            raise UsageError(f"unknown method {self.method!r}", hint="'shards' or 'files'")
        if self.hash_type not in HASH_TYPES:
            raise UsageError(f"unknown hash {self.hash_type!r}", hint=", ".join(HASH_TYPES))
        if self.shard_size <= 0:
            raise UsageError(f"--shard-size must be positive, got {self.shard_size}")
        if self.hash_type == "blake3" and not blake3_available():
            raise UsageError("the BLAKE3 hash needs the 'blake3' package",
                             hint="pip install 'bastion-mlsec[sign]'")


class Signed(NamedTuple):
    """What ``sign_model`` did."""

    signature: Path
    manifest: Manifest
    files: int
    bytes: int
    signer: str
    seconds: float
    notes: tuple[str, ...] = ()


def __getattr__(name: str) -> Any:
    """The verifier, imported on first use: signing starts hashing before ``cryptography``
    and the bundle code are imported (see :func:`sign_model`)."""
    if name in ("Result", "Trust", "verify_model"):
        from bastion.sign import verify

        return getattr(verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_manifest(model: Path, signature: Path, options: Options = Options()) -> Manifest:
    """Walk and hash the model; a :class:`UsageError` for anything that cannot be signed."""
    return _start_manifest(model, signature, options)()


def _start_manifest(model: str | os.PathLike[str], signature: str | os.PathLike[str],
                    options: Options) -> _Manifesting:
    """Walk the model and start hashing it; calling the result waits for the manifest."""
    options.check()
    if not os.path.lexists(model):
        raise UsageError(f"path not found: {_shown(model)}")
    folder = os.path.isdir(model)
    ignores: list[str] = list(DEFAULT_IGNORES) if options.ignore_git and folder else []
    try:
        ignores.extend(normalise_ignore(p) for p in options.ignore)
    except ManifestError as exc:
        raise UsageError(f"--ignore: {exc}") from None
    own = relative_inside(model, signature)
    if own is not None:
        ignores.append(own)
    ignores = sorted(set(ignores))
    try:
        walk = walk_model(model, ignores)
    except (OSError, ManifestError) as exc:
        raise UsageError(f"cannot read {_shown(model)}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if walk.problems:
        shown = "; ".join(f"{p.rel}: {p.reason}" for p in walk.problems[:5])
        more = f" (and {len(walk.problems) - 5} more)" if len(walk.problems) > 5 else ""
        raise UsageError(f"cannot sign {_shown(model)}: {shown}{more}",
                         hint="replace links that leave the folder with the files themselves, "
                              "or --ignore those paths")
    if not walk.files:
        raise UsageError(f"nothing to sign: {_shown(model)} holds no files (after ignores)")
    serialization = Serialization(
        options.method, options.hash_type,
        options.shard_size if options.method == SHARDS else None,
        walk.has_links, tuple(ignores) if folder else ())
    pending = start_hashing(walk.files, serialization, options.workers,
                            processes=options.processes)
    return _Manifesting(model, serialization, pending, {f.rel: f.size for f in walk.files})


class _Manifesting(NamedTuple):
    """A manifest whose files are being hashed."""

    model: str | os.PathLike[str]
    serialization: Serialization
    pending: Pending
    sizes: dict[str, int]

    def __call__(self) -> Manifest:
        from pathlib import Path

        hashed = self.pending.result()
        if hashed.errors:
            raise UsageError(f"cannot sign {_shown(self.model)}: "
                             + "; ".join(str(e) for e in hashed.errors[:5]))
        return Manifest(model_name(Path(self.model)), self.serialization,
                        tuple(hashed.resources), self.sizes)


def sign_model(model: str | os.PathLike[str], key: str | os.PathLike[str], *,
               output: str | os.PathLike[str] | None = None,
               certificate: Path | None = None, chain: Sequence[Path] = (),
               password: bytes | None = None, options: Options = Options()) -> Signed:
    """Sign ``model`` (a folder or a file) with a private key; write the bundle to ``output``."""
    clock = time.perf_counter()
    target = (os.fspath(output) if output is not None
              else default_signature_name(os.fspath(model)))
    _check_output(target)
    if chain and certificate is None:
        raise UsageError("--cert-chain needs --cert (the signing certificate)")
    # Hashing is nearly all the work; it starts first, and the key, its certificates and
    # the code that writes the bundle (cryptography's import alone is tens of milliseconds)
    # are loaded meanwhile. A key that does not load stops the hashing.
    manifesting = _start_manifest(model, target, options)
    from pathlib import Path

    key, signed = Path(key), Path(target)
    try:
        private, certificates = _load_signer(key, password, certificate, chain)
    except BaseException:
        manifesting.pending.cancel()
        raise
    try:
        manifest = manifesting()
    except BaseException:  # an interrupted wait: stop the workers, not only this thread
        manifesting.pending.cancel()
        raise
    from bastion.sign.formats import encode_bundle, pae, statement
    from bastion.sign.keys import describe, key_hint, sign_bytes

    payload = statement(manifest)
    signature = sign_bytes(private, pae(payload))
    hint = key_hint(private.public_key())
    bundle = encode_bundle(payload, signature, key_hint=hint, certificates=certificates)
    replace_atomic(signed, bundle)
    signer = f"{describe(private)} key {key} (hint {hint[:16]}…)"
    if certificates:
        signer += " with its certificate chain"
    notes: tuple[str, ...] = ()
    if describe(private) == "Ed25519":
        notes = ("Ed25519 signatures verify with Bastion; model-signing accepts ECDSA keys "
                 "only",)
    return Signed(signed, manifest, len(manifest.sizes or {}), sum((manifest.sizes or {})
                  .values()), signer, time.perf_counter() - clock, notes)


def _load_signer(key: Path, password: bytes | None, certificate: Path | None,
                 chain: Sequence[Path]) -> tuple[PrivateKey, list[bytes]]:
    from bastion.sign import formats  # noqa: F401  (imported now, used after the hashing)
    from bastion.sign.keys import load_private_key, sign_bytes

    private = load_private_key(key, password)
    # A process's first signature loads the rest of cryptography's OpenSSL backend (5-15 ms
    # on the 2-vCPU machines): made now, over a throwaway message, that work overlaps the
    # hashing instead of following it.
    sign_bytes(private, b"bastion: warm-up")
    certificates: list[bytes] = []
    if certificate is not None:
        from bastion.sign.certs import signing_chain

        certificates = signing_chain(certificate, chain, private)
    return private, certificates


def _check_output(output: str) -> None:
    if os.path.isdir(output):
        raise UsageError(f"--output {_shown(output)} is a folder")
    parent = os.path.dirname(output.rstrip("/" + os.sep) or output) or os.curdir
    if not os.path.isdir(parent):
        raise UsageError(f"--output {_shown(output)}: folder {_shown(parent)} does not exist")


def _shown(path: str | os.PathLike[str]) -> str:
    """A path as the Typer command (which has a ``Path``) shows it."""
    from pathlib import Path

    return str(Path(path))
