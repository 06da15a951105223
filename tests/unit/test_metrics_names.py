"""The metrics follow Prometheus naming (the intake_ prefix, base units, _total
counters, bounded labels), and `[metrics] enabled = false` counts nothing."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import metrics


def _families() -> dict[str, str]:
    registry = CollectorRegistry(auto_describe=False)
    for family in metrics.FAMILIES:
        registry.register(family)
    text = generate_latest(registry).decode()
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_metrics__names_follow_prometheus_practice() -> None:
    metrics.configure(enabled=True, queues=["general"], webhooks=["crm"])
    families = _families()
    assert families, "no families exported"
    for name, kind in families.items():
        assert re.fullmatch(r"intake_[a-z_]+", name), name
        if kind == "histogram":
            assert name.endswith(("_seconds", "_items")), name
    samples = generate_latest_text()
    # Counters are exposed with _total.
    assert "intake_received_total{" in samples
    assert "intake_received_bytes_total{" in samples


def generate_latest_text() -> str:
    registry = CollectorRegistry(auto_describe=False)
    for family in metrics.FAMILIES:
        registry.register(family)
    return generate_latest(registry).decode()


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_metrics__intake_counts_are_bound_labels_and_bounded() -> None:
    metrics.configure(enabled=True, queues=["general"])
    smtp = metrics.intake("smtp")
    before = generate_latest_text()
    smtp.accepted(100)
    smtp.refused("unknown_recipient")
    smtp.refused("something we never named")  # bounded: counted as other
    smtp.failed()
    metrics.intake("api").answered(429)
    metrics.intake("api").answered(503)
    metrics.DESK.claimed("no-such-queue", 2)
    after = generate_latest_text()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    received = "intake_received_total"
    assert delta(received, channel="smtp", outcome="accepted", reason="new") == 1
    assert delta("intake_received_bytes_total", channel="smtp") == 100
    assert delta(received, channel="smtp", outcome="refused", reason="unknown_recipient") == 1
    assert delta(received, channel="smtp", outcome="refused", reason="other") == 1
    assert delta(received, channel="smtp", outcome="temporary_failure", reason="storage") == 1
    assert delta(received, channel="api", outcome="refused", reason="rate_limited") == 1
    assert delta(received, channel="api", outcome="temporary_failure", reason="storage") == 1
    assert delta("intake_claims_total", queue="other") == 2
    assert "no-such-queue" not in after


def test_metrics__disabled_counts_nothing() -> None:
    metrics.configure(enabled=False)
    try:
        before = generate_latest_text()
        metrics.intake("smtp").accepted(100)
        metrics.intake("form").answered(422)
        metrics.PIPELINE.retried()
        metrics.DESK.step("sla_breached", "general")
        assert generate_latest_text() == before
    finally:
        metrics.configure(enabled=True)
