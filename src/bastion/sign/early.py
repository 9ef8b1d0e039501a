"""Hashing started before a signature is checked: the fast path of ``bastion verify``.

Verifying a model is hashing-bound, and loading keys and the verifier's code takes tens of
milliseconds. :func:`start_early` reads the signature's own (not yet verified) hashing
settings and starts hashing at once; :func:`bastion.sign.verify.verify_model` uses that work
only if the signature then verifies and names exactly those settings, and cancels it
otherwise. This module and those it imports load nothing heavy: no ``cryptography``, no
findings, not even ``pathlib`` or ``dataclasses`` (see :mod:`bastion.sign.manifest`).
"""

from __future__ import annotations

import os

from bastion.records import NamedTuple
from bastion.sign.formats import MAX_BUNDLE_SIZE, parse_bundle, statement_serialization
from bastion.sign.hashing import Pending, start_hashing
from bastion.sign.manifest import LocalFile, Serialization, Walk, relative_inside, walk_model


def read_signature(path: str | os.PathLike[str]) -> bytes:
    """The signature file's bytes, refusing one too large to be a signature."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_BUNDLE_SIZE + 1)
    return data


class Hashing(NamedTuple):
    """A walk and the hashing of what it found, under way."""

    walk: Walk
    files: list[LocalFile]
    pending: Pending


class Early(NamedTuple):
    """Hashing started from a signature's own (not yet verified) settings, so it runs while
    the keys and the verifier's code load. Hashing is all it does: nothing it computes is
    trusted until the signature verifies and names these very settings. ``model`` and
    ``signature`` are the paths as given (compare them as ``Path`` objects)."""

    data: bytes
    model: str | os.PathLike[str]
    signature: str | os.PathLike[str]
    serialization: Serialization
    hashing: Hashing

    def cancel(self) -> None:
        """Stop the hashing (a no-op once it has been waited for)."""
        self.hashing.pending.cancel()


def start_early(model: str | os.PathLike[str], signature: str | os.PathLike[str],
                workers: int | None = None, *, processes: bool = False) -> Early | None:
    """Read ``signature`` and start hashing ``model`` as it says; None when anything is off
    (the full verification then finds and reports it)."""
    try:
        data = read_signature(signature)
        serialization = statement_serialization(parse_bundle(data).payload)
        return Early(data, model, signature, serialization,
                     start_hashing_as(model, signature, serialization, workers,
                                      processes=processes))
    except Exception:  # any problem at all is for the verification proper to report
        return None


def start_hashing_as(model: str | os.PathLike[str], signature: str | os.PathLike[str],
                     serialization: Serialization, workers: int | None, *,
                     processes: bool = False) -> Hashing:
    """Walk the model as the signature says and start hashing what it may cover
    (``processes``: see :func:`bastion.sign.hashing.start_hashing`)."""
    ignores = list(serialization.ignore_paths)
    own = relative_inside(model, signature)
    if own is not None:
        ignores.append(own)  # a signature can never be part of its own manifest
    walk = walk_model(model, ignores)
    files = walk.files
    if not serialization.allow_symlinks:
        files = [f for f in files if not f.link]
    return Hashing(walk, files, start_hashing(files, serialization, workers,
                                             processes=processes))
