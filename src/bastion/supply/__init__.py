"""Supply-chain audit: what a project depends on, and which of it has known advisories.

Layout, one module per source or backend (pip-audit style):

* :mod:`bastion.supply.inventory` reads manifests and environments into :class:`Dependency`
  records (requirements files, ``pyproject.toml``, lock files, conda, site-packages);
* :mod:`bastion.supply.advisories` parses OSV records and keeps them in a local SQLite index
  (seeded from a snapshot shipped with the package, so the first audit works offline);
* :mod:`bastion.supply.match` decides, exactly per the OSV schema, which advisories affect a
  pinned version; :mod:`bastion.supply.fix` finds the smallest upgrade that clears them;
* :mod:`bastion.supply.analyzer` turns all of that into findings for ``bastion scan`` and
  :mod:`bastion.supply.audit` into a report for ``bastion audit``.

Malicious-package heuristics and SBOM output plug in beside these (their own modules);
they consume the same :class:`~bastion.supply.inventory.interface.Inventory`.
"""

from __future__ import annotations
