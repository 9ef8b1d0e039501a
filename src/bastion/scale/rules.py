"""Rules of bulk-scan inputs: the lines of a ``--from`` manifest that could not be scanned.

A path given on the command line that does not exist stops the run (exit 2: a typo). A line
of a manifest fed by a registry does not: it becomes a finding at that line, the rest of the
manifest is scanned, and the gate fails closed on what was asked for and not checked.
"""

from __future__ import annotations

from bastion.findings import Category, Severity
from bastion.rules import Rule

INPUT_INVALID = Rule(
    id="SCAN-INPUT-INVALID",
    title="Manifest line that is neither a path nor an http(s) URL",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "A line of the --from manifest could not be understood as a file path or an http(s) "
        "URL (another URL scheme, a NUL byte, an over-long line). What it names was not "
        "scanned, so Bastion cannot vouch for it: it fails closed."
    ),
    remediation="Fix the line: one path (relative to the manifest's folder) or http(s) URL "
                "per line; '#' starts a comment line.",
)
INPUT_MISSING = Rule(
    id="SCAN-INPUT-MISSING",
    title="Manifest names a path that does not exist",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "A path listed in the --from manifest does not exist (paths are relative to the "
        "manifest's folder). The artifact it names was not scanned."
    ),
    remediation="Check the path, or remove the line if the artifact is gone.",
)
DOWNLOAD_FAILED = Rule(
    id="SCAN-DOWNLOAD-FAILED",
    title="Manifest URL could not be downloaded",
    severity=Severity.HIGH,
    category=Category.COVERAGE,
    description=(
        "A URL listed in the --from manifest could not be fetched within the size and time "
        "bounds (HTTP error, timeout, too large, a redirect to another scheme). The artifact "
        "was not scanned."
    ),
    remediation="Check that the URL is reachable from the scanning machine and that the "
                "artifact is within the download limit.",
    references=("CWE-400",),
)

RULES: tuple[Rule, ...] = (INPUT_INVALID, INPUT_MISSING, DOWNLOAD_FAILED)
