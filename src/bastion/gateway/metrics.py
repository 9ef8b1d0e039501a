"""Prometheus metrics of one gateway: requests, latency, denials by reason, quota left.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (tests and several apps
in one process never mix their numbers). Label values come from requests, so each label has
a bounded number of values: a client asking for ten thousand made-up model names must not
make ten thousand time series. Past the bound, new values are counted under ``_other``.
Quota gauges carry the principal's name, so only the ``max_principals`` most recently active
principals keep a series; the least recently active one's series is removed when a new one
arrives.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from bastion.findings import clip

OTHER = "_other"
#: Most (model, status) pairs whose series are kept at hand.
_MAX_SERIES = 4096
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


class _Bounded:
    """The label values seen so far, at most ``limit`` of them; later ones become _other."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = clip(str(value), 100)
        if text in self.seen:
            return text
        with self.lock:
            if text in self.seen or len(self.seen) < self.limit:
                self.seen.add(text)
                return text
        return OTHER


class GatewayMetrics:
    """The gateway's metrics; :meth:`render` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, namespace: str = "bastion_gateway", max_models: int = 200,
                 max_reasons: int = 64, max_principals: int = 100) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = _Bounded(max_models)
        self._status = _Bounded(60)
        self._reason = _Bounded(max_reasons)
        self.max_principals = max_principals
        self._principals: OrderedDict[str, None] = OrderedDict()
        #: principal -> its quota gauges, by (model, period)
        self._gauges: dict[str, dict[tuple[str, str], Any]] = {}
        self._lock = threading.Lock()
        #: (model, status) -> its request counter and latency histogram (labels() looked up
        #: once: it takes a lock and builds a key per call).
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.requests = Counter("requests", "Requests answered, by model and HTTP status.",
                                ["model", "status"], namespace=namespace,
                                registry=self.registry)
        self.latency = Histogram("request_latency_seconds",
                                 "Time from the request's arrival to its answer.", ["model"],
                                 namespace=namespace, buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.denials = Counter("denials", "Requests refused, by reason (auth_*, forbidden, "
                               "not_found, rate_limited, bad_input, ...).", ["reason"],
                               namespace=namespace, registry=self.registry)
        self.detections = Counter("detections", "Requests a detector flagged, by model, "
                                  "detector (extraction, adversarial) and action (alert, "
                                  "block).", ["model", "detector", "action"],
                                  namespace=namespace, registry=self.registry)
        self.quota_remaining = Gauge("quota_remaining",
                                     "Queries left in the current budget period, for the most "
                                     "recently active principals.",
                                     ["model", "principal", "period"], namespace=namespace,
                                     registry=self.registry)

    def observe(self, model: str, status: int, seconds: float, reason: str | None = None) -> None:
        """One answered request; ``reason`` is the denial's word when it was refused."""
        series = self._series.get((model, status))
        if series is None:  # label values are bounded, so are these pairs
            name = self._model(model)
            series = (self.requests.labels(name, self._status(status)),
                      self.latency.labels(name))
            if len(self._series) < _MAX_SERIES:
                self._series[(model, status)] = series
        series[0].inc()
        series[1].observe(seconds)
        if reason is not None:
            self.denials.labels(self._reason(reason)).inc()

    def detection(self, model: str, detector: str, action: str) -> None:
        """A detector flagged a request (``detector`` and ``action`` are the gateway's own
        words, never a client's)."""
        self.detections.labels(self._model(model), detector, action).inc()

    def deny(self, reason: str) -> None:
        self.denials.labels(self._reason(reason)).inc()

    def quota(self, model: str, principal: str, *, day: int | None = None,
              month: int | None = None) -> None:
        """The budget left to ``principal`` on ``model`` after its last request."""
        name = self._model(model)
        who = clip(principal, 100)
        with self._lock:
            self._principals[who] = None
            self._principals.move_to_end(who)
            gauges = self._gauges.setdefault(who, {})
            while len(self._principals) > self.max_principals:
                gone, _ = self._principals.popitem(last=False)
                for old_model, period in self._gauges.pop(gone, {}):
                    with contextlib.suppress(KeyError):
                        self.quota_remaining.remove(old_model, gone, period)
            if who not in self._principals:
                return
            for period, value in (("day", day), ("month", month)):
                if value is None:
                    continue
                gauge = gauges.get((name, period))
                if gauge is None:
                    gauge = gauges[(name, period)] = self.quota_remaining.labels(name, who,
                                                                                 period)
                gauge.set(value)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
