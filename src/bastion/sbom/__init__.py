"""Software (and ML) bills of materials: what a project is made of, offline.

Two ways in, one result (:class:`~bastion.sbom.values.Sbom`):

- :func:`~bastion.sbom.generate.generate` is ``bastion sbom PATH``: audit the manifests,
  lock files and installed environments under the paths, find and hash the model files,
  scan them for their verdict.
- :func:`~bastion.sbom.generate.from_report` is ``--format cyclonedx`` on ``scan`` and
  ``audit``: a renderer only gets the report, so the inventory and the model files are read
  again from the report's roots (cheap: manifests are small, hashing streams), and every
  vulnerability and verdict comes from the report's own findings. A report says neither
  which files a model analyzer read nor the policy's excludes, so an audit report's model
  files are listed "not-scanned" and the default policy walks the roots.

The package is split by role: :mod:`~bastion.sbom.values` (what an SBOM says),
:mod:`~bastion.sbom.locks` and :mod:`~bastion.sbom.installed` (hashes, edges and licenses
from manifests and metadata), :mod:`~bastion.sbom.models` (model files and their hashes),
:mod:`~bastion.sbom.collect` (merging it all) and :mod:`~bastion.sbom.generate` (the two
entry points). Nothing here imports cyclonedx-python-lib: :mod:`bastion.report.cyclonedx`
renders. This module imports nothing, so the CLI pays for the SBOM only when it makes one.
"""
