"""Errors the gateway turns into HTTP answers (and the CLI into one-line messages)."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every gateway error."""


class AuthError(GatewayError):
    """Authentication failed. ``reason`` is a short machine word for logs and metrics
    (``malformed``, ``unknown``, ``revoked``, ``expired``, ``invalid``, ...); ``message`` is
    for the client and never contains the credential."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


class InputRejected(GatewayError):
    """The request body breaks the model's declared input schema (413: too large, 422: wrong)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ModelIntegrityError(GatewayError):
    """A model's files no longer match the digest recorded at admission."""


class AdmissionRefused(GatewayError):
    """``bastion models add`` refused a model: its scan or signature failed. ``report`` is
    the scan's :class:`~bastion.findings.Report` when the scan is what refused it."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class SeparationOfDutiesError(GatewayError):
    """A grant would give one principal both black-box and white-box access to a model."""


class NotFound(GatewayError):
    """No such model, version, key or grant."""
