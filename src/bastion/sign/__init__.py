"""Model signing and verification, in the OpenSSF model-signing (OMS) format.

A model folder (or file) is walked and hashed (:mod:`~bastion.sign.manifest`,
:mod:`~bastion.sign.hashing`), the manifest is written as the in-toto statement of a DSSE
envelope in a Sigstore bundle (:mod:`~bastion.sign.formats`) and signed with an ECDSA or
Ed25519 key, optionally with an X.509 chain (:mod:`~bastion.sign.keys`,
:mod:`~bastion.sign.certs`). Verification reports every difference as a finding
(:mod:`~bastion.sign.verify`, :mod:`~bastion.sign.diff`); ``bastion scan`` reports the status
of signed model folders (:mod:`~bastion.sign.analyzer`). Sigstore keyless signing is
delegated to the ``model-signing`` library (:mod:`~bastion.sign.sigstore`). Entry points:
:mod:`bastion.sign.interface`.

Nothing is imported here: ``cryptography`` loads only when a key or certificate is used.
"""
