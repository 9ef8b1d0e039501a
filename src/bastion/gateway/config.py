"""Gateway settings: the ``[gateway]`` table of the policy file, then ``BASTION_GATEWAY_*``
environment variables, then command-line options (each overriding the one before).

Everything has a safe default: deny by default, separation of duties on, rounded scores,
bounded bodies, quotas on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "BASTION_GATEWAY_"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              alias_generator=lambda name: name.replace("_", "-"))


class QuotaSettings(_Strict):
    """Per principal per model. Budgets are the main brake on model extraction."""

    rate: float = Field(10.0, gt=0, le=1e6, description="requests per second (token refill)")
    burst: int = Field(20, ge=1, le=10**7, description="bucket size")
    per_day: int | None = Field(10_000, ge=1)
    per_month: int | None = Field(None, ge=1)


class JWTSettings(_Strict):
    """OIDC bearer tokens, validated against the issuer's JWKS (file or https URL)."""

    jwks: str
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    principal_claim: str = "sub"
    groups_claim: str = "groups"
    leeway: int = Field(30, ge=0, le=600)


class GatewayConfig(_Strict):
    db_url: str | None = None
    db_schema: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "bastion"
    jwt: JWTSettings | None = None
    quota: QuotaSettings = QuotaSettings()
    #: Per-model overrides of ``quota``.
    quotas: dict[str, QuotaSettings] = Field(default_factory=dict)
    separation_of_duties: bool = True
    score_precision: int = Field(3, ge=0, le=8)
    top_k: int | None = Field(None, ge=1, le=1000)
    max_body_bytes: int = Field(1 << 20, ge=64, le=1 << 30)
    #: Prometheus metrics name models: by default only an ``admin`` on ``*`` may read them.
    public_metrics: bool = False
    #: Serve only these models (default: every admitted one).
    models: tuple[str, ...] | None = None
    #: How long a registry or grant change may take to reach a running gateway.
    refresh_seconds: float = Field(1.0, ge=0, le=3600)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("a non-empty prefix without spaces")
        return value

    def quota_for(self, model: str) -> QuotaSettings:
        return self.quotas.get(model, self.quota)


class ConfigError(ValueError):
    """The gateway settings are invalid; the message lists every problem."""


def load_config(table: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                **overrides: Any) -> GatewayConfig:
    """Merge the policy's ``[gateway]`` table, the environment and explicit overrides."""
    data: dict[str, Any] = dict(table or {})
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and value != "":
            name = key.removeprefix(ENV_PREFIX).lower().replace("_", "-")
            data[name] = _env_value(value)
    for key, value in overrides.items():
        if value is not None:
            data[key.replace("_", "-")] = value
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        lines = ["invalid gateway settings ([gateway] table or BASTION_GATEWAY_* variables)"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def _env_value(value: str) -> Any:
    """Environment values are strings; JSON-looking ones (tables, lists) are decoded."""
    if value[:1] in "[{":
        import json

        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
