"""What ships enabled: the default analyzers, in dispatch order, and the rule catalogue.

This is the one place that lists them; nothing registers itself at import time.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.analyzer import Analyzer, LazyAnalyzer, Target, WholeScanCheck
from bastion.findings import Finding
from bastion.policy import Policy
from bastion.rules import CORE_RULES, Rule
from bastion.scan import sniff


def default_analyzers() -> tuple[Analyzer, ...]:
    """Specific formats before generic containers: the first claimant of a capability wins.

    Every analyzer is behind a cheap pre-filter (:class:`LazyAnalyzer`): its module is only
    imported when a file might be for it.
    """
    from bastion.scan import MODEL_ANALYZERS
    return (
        *MODEL_ANALYZERS,
        LazyAnalyzer("bastion.supply.analyzer:SupplyAnalyzer", "supply-manifest", "supply",
                     _manifest_named),  # by file name; the auditing machinery loads on use
        LazyAnalyzer("bastion.supply.heuristics:HeuristicsAnalyzer", "supply-heuristics",
                     "supply", _package_like),
        LazyAnalyzer("bastion.sign.analyzer:SignatureAnalyzer", "model-signature", "sign",
                     _json_like),
        LazyAnalyzer("bastion.exposure.analyzer:ExposureAnalyzer", "infra-exposure", "infra",
                     _config_like),
    )


def _manifest_named(target: Target) -> bool:
    from bastion.supply.names import manifest_kind

    return manifest_kind(target.name) is not None


def _package_like(target: Target) -> bool:
    """A text .pth file, a dist-info RECORD, a compressed or tar archive (an sdist), or a zip
    whose central directory names a wheel's, an egg's or an sdist's metadata."""
    name = target.name
    if name.lower().endswith(".pth"):
        return b"\0" not in target.head  # a PyTorch checkpoint named .pth is binary
    if name == "RECORD":
        return True
    if sniff.zip_file(target):
        return _zip_tail_names_package(target)
    return sniff.archive(target)


_PACKAGE_MARKERS = (b".dist-info/", b"EGG-INFO/", b"PKG-INFO", b"setup.py", b"pyproject.toml")


def _zip_tail_names_package(target: Target) -> bool:
    """The central directory (at the end of a zip) lists every name: look for package
    metadata in its last 256 KiB rather than importing the package analyzer for every zip."""
    with target.open() as stream:
        stream.seek(max(0, target.size - (256 << 10)))
        tail = stream.read(256 << 10)
    return any(marker in tail for marker in _PACKAGE_MARKERS)


def _json_like(target: Target) -> bool:
    return target.head.lstrip()[:1] == b"{"


_CONFIG_SUFFIXES = (".properties", ".yaml", ".yml", ".ini", ".sh", ".bash", ".env",
                    ".dockerfile", ".containerfile")
_CONFIG_NAMES = frozenset({"procfile", "entrypoint", "docker-entrypoint", "start", "run"})


def _config_like(target: Target) -> bool:
    """ML platform configuration by name (a text file): the infra analyzer decides on content."""
    name = target.name.lower()
    if b"\0" in target.head[:1024]:
        return False
    return (name.endswith(_CONFIG_SUFFIXES) or name in _CONFIG_NAMES
            or name.startswith(("dockerfile", "containerfile"))
            or (name.startswith("jupyter") and name.endswith(("_config.py", "_config.json")))
            or (name.endswith(".json") and b'"apiVersion"' in target.head))


def all_rules() -> tuple[Rule, ...]:
    """Every rule Bastion can raise, core rules first, each id once."""
    from bastion.assess.rules import RULES as ASSESS_RULES
    from bastion.exposure.rules import RULES as INFRA_RULES
    from bastion.scale.rules import RULES as INPUT_RULES
    from bastion.scan import model_rules
    from bastion.sign.rules import RULES as SIGN_RULES
    from bastion.supply.heuristics import RULES as HEURISTIC_RULES
    from bastion.supply.rules import RULES as SUPPLY_RULES

    seen: dict[str, Rule] = {}
    for rule in (*CORE_RULES, *INPUT_RULES, *model_rules(), *SUPPLY_RULES, *HEURISTIC_RULES,
                 *SIGN_RULES, *INFRA_RULES, *ASSESS_RULES):
        seen.setdefault(rule.id, rule)
    return tuple(seen.values())


def rule_ids() -> frozenset[str]:
    return frozenset(rule.id for rule in all_rules())


def folder_checks() -> tuple[WholeScanCheck, ...]:
    """Checks run once per scan, after the per-file pass, over every file walked: each gets
    the display paths walked, the findings so far and the policy (e.g. files the policy says
    must be signed that no signature covers)."""
    return (_signature_checks,)


def _signature_checks(walked: Sequence[str], findings: Sequence[Finding],
                      policy: Policy) -> list[Finding]:
    """The signing checks, loaded only when the policy asks for signatures at all."""
    if not policy.sign.active:
        return []
    from bastion.sign.analyzer import FOLDER_CHECKS

    return [f for check in FOLDER_CHECKS for f in check(walked, findings, policy)]
