"""Gateway settings: the ``[gateway]`` table of the policy file, then ``BASTION_GATEWAY_*``
environment variables, then command-line options (each overriding the one before).

Everything has a safe default: deny by default, separation of duties on, rounded scores,
bounded bodies, quotas on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from bastion.gateway.tokens import JWTAuthenticator

ENV_PREFIX = "BASTION_GATEWAY_"
#: ``BASTION_GATEWAY_*`` variables that are not settings: ``bastion serve`` reads HOST and PORT
#: as its own options, and hands the merged settings to its workers in SETTINGS.
_NOT_SETTINGS = frozenset({"HOST", "PORT", "SETTINGS"})


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

    @model_validator(mode="after")
    def _usable(self) -> JWTSettings:
        """Build the authenticator once (it reads nothing yet), so a setting it refuses
        (``HS256``, an empty issuer, a plain-http JWKS URL) is a settings error at start-up,
        not a worker's crash."""
        self.authenticator()
        return self

    def authenticator(self) -> JWTAuthenticator:
        """The authenticator these settings describe; it reads no keys yet."""
        from bastion.gateway.tokens import JWTAuthenticator

        return JWTAuthenticator(self.jwks, issuer=self.issuer, audience=self.audience,
                                algorithms=self.algorithms,
                                principal_claim=self.principal_claim,
                                groups_claim=self.groups_claim, leeway=self.leeway)


Mode = Literal["off", "alert", "block"]


class DetectorSettings(_Strict):
    """Live attack detection for one model (``[gateway.detectors."*"]`` for every model,
    ``[gateway.detectors.<model>]`` for one: its keys override the ``*`` ones). Both
    detectors are off by default; see :mod:`bastion.gateway.detectors`."""

    #: Model extraction: PRADA and query volume, per principal.
    extraction: Mode = "off"
    #: PRADA: a Shapiro-Wilk W of the query distances below this flags the principal.
    delta: float = Field(0.9, gt=0, lt=1)
    #: PRADA tests a principal once it has this many query distances...
    min_samples: int = Field(100, ge=20, le=5000)
    #: ...over its most recent ``window`` distances...
    window: int = Field(300, ge=20, le=5000)
    #: ...and keeps at most this many of its inputs to measure them against.
    max_samples: int = Field(1000, ge=20, le=100_000)
    #: Query volume: queries per window above ``volume-factor`` times the principal's usual
    #: rate, and above ``volume-floor`` (0 turns the volume check off).
    volume_window: float = Field(60.0, ge=1, le=86400)
    volume_factor: float = Field(10.0, ge=1, le=1e6)
    volume_floor: int = Field(2000, ge=0, le=10**9)
    #: Principals tracked per model, and the memory all of them may use (least recent first).
    max_principals: int = Field(1000, ge=1, le=10**6)
    memory_mib: int = Field(64, ge=1, le=1 << 16)
    #: Adversarial inputs: feature squeezing (needs the input schema's min and max).
    adversarial: Mode = "off"
    #: Bit-depth reduction to this many bits over [min, max] (0: not used).
    squeeze_bits: int = Field(4, ge=0, le=16)
    #: A 2x2 median filter, for image-shaped inputs.
    median_smoothing: bool = False
    #: Largest L1 distance between the answers on the input and on a squeezed copy (0-2).
    threshold: float = Field(1.0, gt=0, le=2)

    @model_validator(mode="after")
    def _squeezes(self) -> DetectorSettings:
        if self.adversarial != "off" and not self.squeeze_bits and not self.median_smoothing:
            raise ValueError("adversarial detection needs squeeze-bits or median-smoothing")
        if self.min_samples > self.window:
            raise ValueError("min-samples is above window")
        return self


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
    #: How long a registry or grant change may take to reach a running gateway (and how long
    #: a model version that failed to load is refused with the same answer before it is
    #: tried again).
    refresh_seconds: float = Field(1.0, ge=0, le=3600)
    #: Model versions held loaded at once; the least recently used one is unloaded first
    #: (a later request loads it again, after re-checking its content digest).
    max_loaded_models: int = Field(32, ge=1, le=10_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Attack detection per model; ``"*"`` holds the defaults of every model.
    detectors: dict[str, DetectorSettings] = Field(default_factory=dict)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("a non-empty prefix without spaces")
        return value

    def quota_for(self, model: str) -> QuotaSettings:
        return self.quotas.get(model, self.quota)

    @field_validator("detectors", mode="before")
    @classmethod
    def _merge_detectors(cls, value: Any) -> Any:
        """Each model's table on top of the ``*`` table, key by key (so a model's entry is
        complete, and a round trip through JSON keeps its meaning)."""
        if not isinstance(value, Mapping):
            return value

        def plain(table: Any) -> Any:
            if isinstance(table, DetectorSettings):
                table = table.model_dump(by_alias=True, exclude_unset=True)
            if not isinstance(table, Mapping):
                return table
            return {str(k).replace("_", "-"): v for k, v in table.items()}

        tables = {name: plain(table) for name, table in value.items()}
        base = tables.get("*", {})
        if not isinstance(base, Mapping):
            return tables
        return {name: ({**base, **table} if name != "*" and isinstance(table, Mapping)
                       else table) for name, table in tables.items()}

    def detectors_for(self, model: str) -> DetectorSettings:
        return self.detectors.get(model) or self.detectors.get("*") or DetectorSettings()


class ConfigError(ValueError):
    """The gateway settings are invalid; the message lists every problem."""


def load_config(table: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                **overrides: Any) -> GatewayConfig:
    """Merge the policy's ``[gateway]`` table, the environment and explicit overrides."""
    data: dict[str, Any] = dict(table or {})
    env = os.environ if environ is None else environ
    for key, value in env.items():
        if (key.startswith(ENV_PREFIX) and value != ""
                and key.removeprefix(ENV_PREFIX) not in _NOT_SETTINGS):
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
