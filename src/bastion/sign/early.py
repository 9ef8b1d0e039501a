"""Hashing started before a signature is checked: the fast path of ``bastion verify``.

Verifying a model is hashing-bound, and loading keys and the verifier's code takes tens of
milliseconds. :func:`start_early` reads the signature's own (not yet verified) hashing
settings and starts hashing at once; :func:`bastion.sign.verify.verify_model` uses that work
only if the signature then verifies and names exactly those settings, and cancels it
otherwise. This module imports nothing heavy (no ``cryptography``, no findings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.sign.formats import MAX_BUNDLE_SIZE, parse_bundle, parse_statement
from bastion.sign.hashing import Pending, start_hashing
from bastion.sign.manifest import LocalFile, Serialization, Walk, relative_inside, walk_model


def read_signature(path: Path) -> bytes:
    """The signature file's bytes, refusing one too large to be a signature."""
    with path.open("rb") as handle:
        data = handle.read(MAX_BUNDLE_SIZE + 1)
    return data


@dataclass
class Early:
    """Hashing started from a signature's own (not yet verified) settings, so it runs while
    the keys and the verifier's code load. Hashing is all it does: nothing it computes is
    trusted until the signature verifies and names these very settings."""

    data: bytes
    model: Path
    signature: Path
    serialization: Serialization
    hashing: Hashing

    def cancel(self) -> None:
        """Stop the hashing (a no-op once it has been waited for)."""
        self.hashing.pending.cancel()


def start_early(model: Path, signature: Path, workers: int | None = None) -> Early | None:
    """Read ``signature`` and start hashing ``model`` as it says; None when anything is off
    (the full verification then finds and reports it)."""
    try:
        data = read_signature(signature)
        manifest = parse_statement(parse_bundle(data).payload)
        serialization = manifest.serialization
        return Early(data, model, signature, serialization,
                     start_hashing_as(model, signature, serialization, workers))
    except Exception:  # any problem at all is for the verification proper to report
        return None


@dataclass
class Hashing:
    walk: Walk
    files: list[LocalFile]
    pending: Pending


def start_hashing_as(model: Path, signature: Path, serialization: Serialization,
                     workers: int | None) -> Hashing:
    """Walk the model as the signature says and start hashing what it may cover."""
    ignores = list(serialization.ignore_paths)
    own = relative_inside(model, signature)
    if own is not None:
        ignores.append(own)  # a signature can never be part of its own manifest
    walk = walk_model(model, ignores)
    files = walk.files
    if not serialization.allow_symlinks:
        files = [f for f in files if not f.link]
    return Hashing(walk, files, start_hashing(files, serialization, workers))
