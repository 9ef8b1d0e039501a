"""Bastion's exceptions.

Every error Bastion raises on purpose derives from :class:`BastionError` and carries a
``diagnostics()`` text: what went wrong and what to do about it. The CLI catches the base
class once and turns it into a one-line message and exit code 2.

    BastionError
    ├── UsageError          a bad argument: a missing path, an unknown format
    ├── PolicyError         a policy file that does not parse or validate
    └── InputError          an input that cannot be processed at all

A hostile or broken *scanned file* never raises: it becomes a finding (fail closed).
"""

from __future__ import annotations


class BastionError(Exception):
    """Base class of every deliberate Bastion error."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """The message, followed by the hint on what to do when there is one."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(BastionError):
    """A command was called with arguments that cannot work."""


class PolicyError(BastionError):
    """A policy file could not be read, parsed or validated."""


class InputError(BastionError):
    """An input could not be processed at all (as opposed to a finding about it)."""


#: Optional modules, and the extra of ``bastion-mlsec`` that installs each.
_EXTRAS = {
    "sqlalchemy": "gateway", "psycopg": "gateway", "fastapi": "gateway", "uvicorn": "gateway",
    "starlette": "gateway", "pydantic": "gateway", "argon2": "gateway", "jwt": "gateway",
    "prometheus_client": "gateway", "redis": "gateway", "onnxruntime": "gateway",
    "skops": "gateway", "numpy": "assess", "sklearn": "assess", "scipy": "assess",
    "art": "assess", "ray": "ray", "cyclonedx": "sbom", "model_signing": "sign",
    "blake3": "sign", "lz4": "formats", "torch": "torch",
}


def missing_extra(exc: ModuleNotFoundError, command: str | None = None) -> UsageError | None:
    """The usage error for an optional dependency that is not installed, naming the extra
    that brings it (``None`` when the missing module is not an optional one: a real bug).
    ``bastion scan`` needs only the small 'cache' extra for the database (``--cache``)."""
    top = (exc.name or "").partition(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    if command == "scan" and top in ("sqlalchemy", "psycopg"):
        extra = "cache"
    return UsageError(f"this command needs the optional '{extra}' extra: {top} is not "
                      "installed", hint=f"pip install 'bastion-mlsec[{extra}]'")
