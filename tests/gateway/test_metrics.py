"""Gateway metrics: what is counted, read back through Prometheus's own text parser, and
the bounds that keep hostile label values from exploding the number of series."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bastion.gateway.metrics import OTHER, GatewayMetrics


def samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: GatewayMetrics, name: str, **labels: Any) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_requests_latency_and_denials() -> None:
    m = GatewayMetrics()
    m.observe("iris", 200, 0.0007)
    m.observe("iris", 200, 0.003)
    m.observe("iris", 429, 0.0002, "rate_limited")
    m.observe("-", 401, 0.0001, "auth_expired")
    assert value(m, "bastion_gateway_requests_total", model="iris", status="200") == 2
    assert value(m, "bastion_gateway_requests_total", model="iris", status="429") == 1
    assert value(m, "bastion_gateway_denials_total", reason="rate_limited") == 1
    assert value(m, "bastion_gateway_denials_total", reason="auth_expired") == 1
    assert value(m, "bastion_gateway_request_latency_seconds_count", model="iris") == 3
    assert value(m, "bastion_gateway_request_latency_seconds_bucket", model="iris",
                 le="0.001") == 2
    assert value(m, "bastion_gateway_request_latency_seconds_sum",
                 model="iris") == 0.0007 + 0.003 + 0.0002
    m.deny("forbidden")
    assert value(m, "bastion_gateway_denials_total", reason="forbidden") == 1
    assert m.content_type.startswith("text/plain")


def test_each_instance_has_its_own_registry() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    a.observe("iris", 200, 0.001)
    assert value(a, "bastion_gateway_requests_total", model="iris", status="200") == 1
    assert value(b, "bastion_gateway_requests_total", model="iris", status="200") is None


def test_label_values_are_bounded() -> None:
    m = GatewayMetrics(max_models=3, max_reasons=2)
    for i in range(50):
        m.observe(f"made-up-{i}", 404, 0.001, f"reason-{i}")
    models = {dict(labels).get("model") for (name, labels) in samples(m)
              if name == "bastion_gateway_requests_total"}
    assert models == {"made-up-0", "made-up-1", "made-up-2", OTHER}
    assert value(m, "bastion_gateway_requests_total", model=OTHER, status="404") == 47
    assert value(m, "bastion_gateway_denials_total", reason=OTHER) == 48


def test_hostile_label_values_render_safely() -> None:
    m = GatewayMetrics()
    m.observe('iris"}\nfake_metric 1\n', 200, 0.001)
    m.quota("x" * 10_000, "eve\x1b[31m", day=5)
    text = m.render().decode()
    assert "\nfake_metric 1" not in text
    assert "\x1b" not in text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "fake_metric" not in families
    longest = max(len(v) for (_n, labels) in samples(m) for (_k, v) in labels)
    assert longest < 200


def test_quota_gauge_keeps_recent_principals_only() -> None:
    m = GatewayMetrics(max_principals=2)
    m.quota("iris", "alice", day=10, month=100)
    m.quota("iris", "bob", day=7)
    assert value(m, "bastion_gateway_quota_remaining", model="iris", principal="alice",
                 period="month") == 100
    m.quota("iris", "alice", day=9)  # alice is active again: bob is now the oldest
    m.quota("digits", "carol", day=3)
    got = samples(m)
    principals = {dict(labels)["principal"] for (name, labels) in got
                  if name == "bastion_gateway_quota_remaining"}
    assert principals == {"alice", "carol"}
    assert value(m, "bastion_gateway_quota_remaining", model="iris", principal="alice",
                 period="day") == 9
    none = GatewayMetrics(max_principals=0)
    none.quota("iris", "alice", day=1)
    assert not [k for k in samples(none) if k[0] == "bastion_gateway_quota_remaining"]
