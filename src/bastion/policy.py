"""The policy: one file that says what fails the gate and what is accepted.

Read from ``bastion.toml`` (top-level keys) or the ``[tool.bastion]`` table of
``pyproject.toml``, found by walking up from the working directory, or named with
``--policy``. Example::

    fail-on = "high"                     # gate threshold
    exclude = ["**/.venv/**"]            # never walked

    [severity]                           # per-rule overrides
    PICKLE-UNKNOWN-GLOBAL = "high"

    [[ignore]]                           # accepted risks, with a reason
    rule = "PICKLE-UNKNOWN-GLOBAL"
    path = "models/legacy/*.pkl"
    reason = "Legacy models, retrained in Q1"
    expires = 2027-03-31

    [allow]                              # allowlists read by the capabilities
    pickle-globals = ["mypkg.models.*"]

    [limits]
    max-file-size = "64GiB"
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from bastion.errors import PolicyError
from bastion.findings import Finding, Location, Severity, Suppression
from bastion.rules import IGNORE_EXPIRED

POLICY_FILE = "bastion.toml"
PYPROJECT = "pyproject.toml"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _parse_size(value: Any) -> Any:
    """Accept ``1048576``, ``"1MiB"``, ``"2 GB"``."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"expected a size like 1048576, '512MiB' or '2GB', got {value!r}")
        return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return value


Size = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=_kebab, populate_by_name=True
    )


class Ignore(_Section):
    """An accepted risk: findings it matches are kept in reports but marked suppressed."""

    rule: str = Field(description="Rule id, or a glob such as 'PICKLE-*'.")
    reason: str = Field(min_length=3, description="Why this is accepted. Mandatory.")
    path: str | None = Field(default=None, description="Glob on the finding's file path.")
    fingerprint: str | None = Field(default=None, description="One exact finding.")
    expires: date | None = None

    def matches(self, finding: Finding) -> bool:
        if not fnmatch.fnmatchcase(finding.rule_id, self.rule):
            return False
        if self.fingerprint is not None and finding.fingerprint != self.fingerprint:
            return False
        return self.path is None or path_matches(finding.location.path, self.path)

    def expired(self, today: date) -> bool:
        return self.expires is not None and self.expires < today


class Allow(_Section):
    """Allowlists the capabilities read."""

    pickle_globals: tuple[str, ...] = Field(
        default=(),
        description="Extra importable names a pickle may reference: 'pkg.mod.Name' or 'pkg.*'.",
    )

    @field_validator("pickle_globals")
    @classmethod
    def _check_globals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z_][\w.]*(\.\*)?|[A-Za-z_][\w.]*\.[\w.]+", item):
                raise ValueError(f"expected 'module.name' or 'module.*', got {item!r}")
        return value


class Limits(_Section):
    """Bounds on every size, count and depth, so a hostile file cannot exhaust the scanner."""

    max_file_size: Size = 256 * 2**30
    max_archive_depth: int = Field(default=4, ge=0, le=32)
    max_archive_members: int = Field(default=100_000, gt=0)
    max_decompressed_size: Size = 8 * 2**30
    max_compression_ratio: int = Field(default=200, gt=1)
    max_pickle_opcodes: int = Field(default=5_000_000, gt=0)
    max_pickle_size: Size = 2 * 2**30
    max_header_size: Size = 100 * 2**20


class Policy(_Section):
    fail_on: Severity = Severity.MEDIUM
    severity: dict[str, Severity] = Field(default_factory=dict)
    ignore: tuple[Ignore, ...] = ()
    exclude: tuple[str, ...] = ()
    allow: Allow = Allow()
    limits: Limits = Limits()

    def with_overrides(self, **changes: Any) -> Policy:
        """A copy with some settings replaced (e.g. ``fail_on`` from the command line)."""
        return self.model_copy(update={k: v for k, v in changes.items() if v is not None})

    def excluded(self, path: str) -> bool:
        return any(path_matches(path, pattern) for pattern in self.exclude)


DEFAULT = Policy()


def path_matches(path: str, pattern: str) -> bool:
    """Glob match on a POSIX path; a relative pattern may match any trailing part."""
    path = path.replace("\\", "/")
    if fnmatch.fnmatchcase(path, pattern):
        return True
    if pattern.startswith("/"):
        return False
    return fnmatch.fnmatchcase(path, "*/" + pattern.removeprefix("**/"))


# -- loading -----------------------------------------------------------------------------------


def find_policy(start: Path) -> Path | None:
    """The nearest ``bastion.toml``, or ``pyproject.toml`` with ``[tool.bastion]``, upwards."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / POLICY_FILE
        if candidate.is_file():
            return candidate
        pyproject = folder / PYPROJECT
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue  # not ours to complain about unless named explicitly
            if isinstance(data.get("tool"), dict) and "bastion" in data["tool"]:
                return pyproject
    return None


def load_policy(path: Path, known_rules: Iterable[str] | None = None) -> Policy:
    """Read and validate a policy file; every problem names the file, the key and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    section = ""
    if path.name == PYPROJECT:
        tool = data.get("tool", {})
        if not isinstance(tool, dict) or "bastion" not in tool:
            raise PolicyError(f"{path}: has no [tool.bastion] table")
        data = tool["bastion"]
        section = "tool.bastion."
        if not isinstance(data, dict):
            raise PolicyError(f"{path}: [tool.bastion] must be a table")
    return parse_policy(data, source=f"{path}", prefix=section, known_rules=known_rules)


def parse_policy(
    data: dict[str, Any],
    *,
    source: str = "<policy>",
    prefix: str = "",
    known_rules: Iterable[str] | None = None,
) -> Policy:
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, source, prefix)) from None
    if known_rules is not None:
        _check_rule_ids(policy, set(known_rules), source, prefix)
    return policy


def _describe(exc: ValidationError, source: str, prefix: str) -> str:
    lines = [f"{source}: invalid policy"]
    for error in exc.errors():
        key = prefix + _key_path(error["loc"])
        msg = error["msg"]
        if error["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; keys are kebab-case, e.g. 'fail-on')"
        elif error["type"] == "enum":
            expected = error.get("ctx", {}).get("expected", "")
            msg = f"expected one of {expected}"
        elif error["type"] == "missing":
            msg = "required key is missing"
        elif error["type"] == "value_error":  # our validators already quote the bad value
            msg = msg.removeprefix("Value error, ")
        got = error.get("input")
        quiet = ("missing", "extra_forbidden", "value_error")
        shown = "" if error["type"] in quiet else f" (got {got!r})"
        lines.append(f"  {key}: {msg}{shown}")
    return "\n".join(lines)


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _check_rule_ids(policy: Policy, known: set[str], source: str, prefix: str) -> None:
    problems = []
    for rule_id in policy.severity:
        if rule_id not in known:
            problems.append(f"  {prefix}severity.{rule_id}: unknown rule id (see `bastion rules`)")
    for i, entry in enumerate(policy.ignore):
        if not any(fnmatch.fnmatchcase(r, entry.rule) for r in known):
            problems.append(
                f"  {prefix}ignore[{i}].rule: {entry.rule!r} matches no rule (see `bastion rules`)"
            )
    if problems:
        raise PolicyError("\n".join([f"{source}: invalid policy", *problems]))


# -- applying ----------------------------------------------------------------------------------


def apply_policy(
    findings: Iterable[Finding], policy: Policy, *, today: date | None = None, source: str = ""
) -> list[Finding]:
    """Severity overrides and suppressions; expired ignores become findings of their own."""
    today = today or date.today()
    live = [entry for entry in policy.ignore if not entry.expired(today)]
    out: list[Finding] = []
    for finding in findings:
        override = policy.severity.get(finding.rule_id)
        if override is not None and override != finding.severity:
            finding = finding.model_copy(update={"severity": override})
        for entry in live:
            if entry.matches(finding):
                finding = finding.model_copy(
                    update={"suppression": Suppression(
                        reason=entry.reason,
                        expires=entry.expires.isoformat() if entry.expires else None,
                    )}
                )
                break
        out.append(finding)
    for i, entry in enumerate(policy.ignore):
        if entry.expired(today):
            out.append(IGNORE_EXPIRED.finding(
                Location(path=source or "<policy>"),
                f"ignore[{i}] for {entry.rule!r} expired on {entry.expires}; it no longer applies",
                evidence=f"reason was: {entry.reason}",
            ))
    return out
