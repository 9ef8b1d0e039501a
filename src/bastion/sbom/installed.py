"""Licenses, summaries and ``Requires-Dist`` edges of installed distributions.

Read from the ``METADATA`` headers only (bounded, never imported). License facts, in the
order core metadata defines them: ``License-Expression`` (PEP 639, an SPDX expression),
else the ``License`` field when it is short (long ones are the whole license text, kept
out of the SBOM), else the trove classifiers ``License :: ...``.
``Requires-Dist`` lines that apply only with an extra are not edges: the extra may not be
installed. Other markers are kept: the metadata was written for this environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bastion.sbom.values import text
from bastion.supply.inventory.installed import MAX_METADATA_BYTES
from bastion.supply.inventory.interface import normalize

#: A ``License`` field longer than this is license text, not a name.
MAX_LICENSE_NAME = 100
#: Most licenses and requirements kept from one distribution.
MAX_ENTRIES = 200
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EXTRA_MARKER = re.compile(r"\bextra\s*==", re.I)
#: The classifiers most packages use, as SPDX ids; others keep their name.
_CLASSIFIERS = {
    "MIT License": "MIT", "BSD License": "BSD-3-Clause", "Apache Software License": "Apache-2.0",
    "ISC License (ISCL)": "ISC", "Python Software Foundation License": "PSF-2.0",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL-2.0-or-later",
    "The Unlicense (Unlicense)": "Unlicense",
}


@dataclass(frozen=True)
class Installed:
    """What one ``METADATA`` file adds to the SBOM."""

    licenses: tuple[str, ...] = ()
    summary: str = ""
    #: Normalized names of the distributions it requires (outside extras).
    requires: tuple[str, ...] = ()


def read_installed(metadata: Path) -> Installed:
    """The license, summary and requirements of an installed distribution, or nothing."""
    try:
        with metadata.open("rb") as handle:
            head = handle.read(MAX_METADATA_BYTES)
    except OSError:
        return Installed()
    fields = _headers(head.decode("utf-8", "replace"))
    return Installed(licenses=_licenses(fields), summary=text(_first(fields, "summary")),
                     requires=_requires(fields.get("requires-dist", [])))


def _headers(content: str) -> dict[str, list[str]]:
    """Every value of every header (``Classifier`` and ``Requires-Dist`` repeat)."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in content.splitlines():
        if not line.strip():
            break
        if line[0].isspace() and last is not None:  # a continuation line
            last[-1] += " " + line.strip()
            continue
        key, sep, value = line.partition(":")
        if sep:
            values = fields.setdefault(key.strip().lower(), [])
            if len(values) < MAX_ENTRIES:
                values.append(value.strip())
            last = values
    return fields


def _first(fields: dict[str, list[str]], key: str) -> str:
    values = fields.get(key)
    return values[0] if values else ""


def _licenses(fields: dict[str, list[str]]) -> tuple[str, ...]:
    expression = _first(fields, "license-expression")
    if expression:
        return (text(expression),)
    name = _first(fields, "license")
    if name and len(name) <= MAX_LICENSE_NAME and name.upper() not in ("UNKNOWN", "NONE"):
        return (text(name),)
    found = []
    for classifier in fields.get("classifier", []):
        parts = [p.strip() for p in classifier.split("::")]
        if parts[0] == "License" and len(parts) > 1 and parts[-1] != "OSI Approved":
            found.append(_CLASSIFIERS.get(parts[-1], text(parts[-1])))
    return tuple(dict.fromkeys(found))


def _requires(values: list[str]) -> tuple[str, ...]:
    names = []
    for value in values:
        _spec, _sep, marker = value.partition(";")
        match = _REQUIREMENT_NAME.match(value)
        if match and not _EXTRA_MARKER.search(marker):
            names.append(normalize(match.group(1)))
    return tuple(dict.fromkeys(names))
