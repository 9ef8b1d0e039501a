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
    keras-modules = ["mypkg.layers"]

    [limits]
    max-file-size = "64GiB"
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from pathlib import Path

from bastion.errors import PolicyError
from bastion.findings import Finding, Location, Severity, Suppression
from bastion.records import dataclass, field, replace
from bastion.rules import IGNORE_EXPIRED

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

POLICY_FILE = "bastion.toml"
PYPROJECT = "pyproject.toml"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_GLOBAL_NAME = re.compile(r"[A-Za-z_][\w.]*(\.\*)?")


@dataclass(frozen=True, slots=True)
class Ignore:
    """An accepted risk: findings it matches are kept in reports but marked suppressed."""

    rule: str  # rule id, or a glob such as 'PICKLE-*'
    reason: str  # why this is accepted; mandatory
    path: str | None = None  # glob on the finding's file path
    fingerprint: str | None = None  # one exact finding
    expires: date | None = None

    def matches(self, finding: Finding) -> bool:
        if not fnmatch.fnmatchcase(finding.rule_id, self.rule):
            return False
        if self.fingerprint is not None and finding.fingerprint != self.fingerprint:
            return False
        return self.path is None or path_matches(finding.location.path, self.path)

    def expired(self, today: date) -> bool:
        return self.expires is not None and self.expires < today


@dataclass(frozen=True, slots=True)
class Allow:
    """Allowlists the capabilities read."""

    #: Extra importable names a pickle may reference: 'pkg.mod.Name' or 'pkg.*'.
    pickle_globals: tuple[str, ...] = ()
    #: Modules whose custom Keras layers and functions are trusted: 'pkg.layers' or 'pkg.*'.
    keras_modules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on every size, count and depth, so a hostile file cannot exhaust the scanner."""

    max_file_size: int = 256 * 2**30
    max_archive_depth: int = 4
    max_archive_members: int = 100_000
    max_decompressed_size: int = 8 * 2**30
    max_compression_ratio: int = 200
    max_pickle_opcodes: int = 5_000_000
    max_pickle_size: int = 2 * 2**30
    max_header_size: int = 100 * 2**20


@dataclass(frozen=True, slots=True)
class Sign:
    """Model signing: which files must be signed, and who is trusted to sign them."""

    #: Globs of files that must be covered by a valid signature (e.g. 'models/**').
    require: tuple[str, ...] = ()
    #: Trusted public keys: PEM files (relative to the working folder) or inline PEM.
    keys: tuple[str, ...] = ()
    #: Trusted CA certificates (PEM files) for certificate-mode signatures.
    certificates: tuple[str, ...] = ()
    #: The signer a certificate must name (a subject alternative name), if any.
    identity: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.require or self.keys or self.certificates)


@dataclass(frozen=True, slots=True)
class Policy:
    fail_on: Severity = Severity.MEDIUM
    severity: Mapping[str, Severity] = field(default_factory=dict)
    ignore: tuple[Ignore, ...] = ()
    exclude: tuple[str, ...] = ()
    allow: Allow = Allow()
    limits: Limits = Limits()
    sign: Sign = Sign()
    #: The ``[gateway]`` table, validated by ``bastion serve`` (``bastion.gateway.config``):
    #: the scanner does not need to know its shape, nor pay for importing pydantic.
    gateway: Mapping[str, Any] = field(default_factory=dict)
    #: The ``[assess]`` table, validated by ``bastion assess`` (``bastion.assess.settings``).
    assess: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Policy:
        """A copy with some settings replaced (e.g. ``fail_on`` from the command line)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

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
                text = pyproject.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # not ours to complain about unless named explicitly
            if "bastion" not in text and "\\u" not in text and "\\U" not in text:
                continue  # no [tool.bastion] can hide in it (a key's escapes are the one way)
            import tomllib  # only when the file may be ours: start-up matters

            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                continue
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
    import tomllib

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


# -- validating ----------------------------------------------------------------------------------
#
# A small declarative checker rather than a pydantic model: the policy is read on every run,
# and importing pydantic costs more than scanning a large checkpoint (see the README). Each
# checker takes (value, key) and returns the parsed value or raises _Invalid with the message.


class _Invalid(Exception):
    pass


def _got(value: Any) -> str:
    return f" (got {value!r})"


def _severity(value: Any, key: str) -> Severity:
    try:
        return Severity(value)
    except (ValueError, TypeError):
        names = ", ".join(repr(s.value) for s in reversed(Severity))
        raise _Invalid(f"expected one of {names}{_got(value)}") from None


def _int(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer{_got(value)}")
        if value < low:
            word = "greater than 0" if low == 1 else f"at least {low}"
            raise _Invalid(f"expected a number {word}{_got(value)}")
        if high is not None and value > high:
            raise _Invalid(f"expected a number at most {high}{_got(value)}")
        return value
    return check


def _size(value: Any, key: str) -> int:
    """Accept ``1048576``, ``"1MiB"``, ``"2 GB"``."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise _Invalid(f"expected a size like 1048576, '512MiB' or '2GB'{_got(value)}")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return _int(1)(value, key)


def _text(min_length: int = 0) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"expected a string{_got(value)}")
        if len(value.strip()) < min_length:
            raise _Invalid(f"expected at least {min_length} characters{_got(value)}")
        return value
    return check


def _date(value: Any, key: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _Invalid(f"expected a valid date like 2027-03-31{_got(value)}")


def _strings(item: Callable[[Any, str], str]) -> Callable[[Any, str], tuple[str, ...]]:
    def check(value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"expected a list of strings{_got(value)}")
        return tuple(item(v, key) for v in value)
    return check


def _pickle_global(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _GLOBAL_NAME.fullmatch(value):
        raise _Invalid(f"expected 'module.name' or 'module.*'{_got(value)}")
    return value


def _table(cls: type, spec: Mapping[str, Callable[[Any, str], Any]],
           required: tuple[str, ...] = ()) -> Callable[[Any, str], Any]:
    """A TOML table whose kebab-case keys map to the dataclass's fields."""
    def check(value: Any, key: str) -> Any:
        if not isinstance(value, dict):
            raise _Invalid(f"expected a table{_got(value)}")
        errors: list[tuple[str, str]] = []
        fields: dict[str, Any] = {}
        for name, raw in value.items():
            sub = f"{key}.{name}" if key else name
            checker = spec.get(name)
            if checker is None:
                errors.append((sub, "unknown key (check the spelling; keys are kebab-case, "
                                    "e.g. 'fail-on')"))
                continue
            try:
                fields[name.replace("-", "_")] = checker(raw, sub)
            except _Invalid as exc:
                errors.append((sub, str(exc)))
            except _Errors as exc:
                errors.extend(exc.errors)
        for name in required:
            if name not in value:
                errors.append((f"{key}.{name}" if key else name, "required key is missing"))
        if errors:
            raise _Errors(errors)
        return cls(**fields)
    return check


class _Errors(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _list_of(item: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple[Any, ...]]:
    def check(value: Any, key: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _Invalid(f"expected a list of tables{_got(value)}")
        out, errors = [], []
        for i, entry in enumerate(value):
            try:
                out.append(item(entry, f"{key}[{i}]"))
            except _Invalid as exc:
                errors.append((f"{key}[{i}]", str(exc)))
            except _Errors as exc:
                errors.extend(exc.errors)
        if errors:
            raise _Errors(errors)
        return tuple(out)
    return check


def _severity_map(value: Any, key: str) -> dict[str, Severity]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of rule id = severity{_got(value)}")
    out, errors = {}, []
    for rule_id, sev in value.items():
        try:
            out[rule_id] = _severity(sev, f"{key}.{rule_id}")
        except _Invalid as exc:
            errors.append((f"{key}.{rule_id}", str(exc)))
    if errors:
        raise _Errors(errors)
    return out


def _raw_table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table{_got(value)}")
    return value


_IGNORE = _table(Ignore, {
    "rule": _text(1), "reason": _text(3), "path": _text(1), "fingerprint": _text(1),
    "expires": _date,
}, required=("rule", "reason"))
_ALLOW = _table(Allow, {"pickle-globals": _strings(_pickle_global),
                        "keras-modules": _strings(_pickle_global)})
_LIMITS = _table(Limits, {
    "max-file-size": _size, "max-archive-depth": _int(0, 32),
    "max-archive-members": _int(1), "max-decompressed-size": _size,
    "max-compression-ratio": _int(2), "max-pickle-opcodes": _int(1),
    "max-pickle-size": _size, "max-header-size": _size,
})
_POLICY = _table(Policy, {
    "fail-on": _severity, "severity": _severity_map, "ignore": _list_of(_IGNORE),
    "exclude": _strings(_text(1)), "allow": _ALLOW, "limits": _LIMITS,
    "sign": _table(Sign, {"require": _strings(_text(1)), "keys": _strings(_text(1)),
                          "certificates": _strings(_text(1)), "identity": _text(1)}),
    "gateway": lambda value, key: _raw_table(value, key),
    "assess": lambda value, key: _raw_table(value, key),
})


def parse_policy(
    data: dict[str, Any],
    *,
    source: str = "<policy>",
    prefix: str = "",
    known_rules: Iterable[str] | None = None,
) -> Policy:
    """Validate a policy table (the parsed TOML); every problem is listed at once."""
    try:
        policy: Policy = _POLICY(data, "")
    except (_Errors, _Invalid) as exc:
        errors = exc.errors if isinstance(exc, _Errors) else [("(top level)", str(exc))]
        lines = [f"{source}: invalid policy", *(f"  {prefix}{k}: {m}" for k, m in errors)]
        raise PolicyError("\n".join(lines)) from None
    if known_rules is not None:
        _check_rule_ids(policy, set(known_rules), source, prefix)
    return policy


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
            finding = finding.replace(severity=override)
        for entry in live:
            if entry.matches(finding):
                finding = finding.replace(suppression=Suppression(
                    reason=entry.reason,
                    expires=entry.expires.isoformat() if entry.expires else None,
                ))
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
