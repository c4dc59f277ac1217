"""SinkMetrics on a fresh registry: the names deploy/ reads."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from sinks.metrics import SinkMetrics

DEPLOY_METRICS = Path(__file__).parents[3] / "deploy" / "metrics.txt"


def names(registry: CollectorRegistry) -> set[str]:
    return {s.name for m in registry.collect() for s in m.samples}


def test_exports_every_sink_series_deploy_reads() -> None:
    registry = CollectorRegistry()
    m = SinkMetrics(registry)
    m.rows_written.labels("scans").inc()
    m.insert_duration.labels("scans").observe(0.01)
    m.insert_failures.labels("transient").inc()
    m.dead_letters.labels("invalid").inc()
    m.consumer_lag.labels("scans.enriched", "0").set(3)
    m.end_to_end.observe_since([1000], 2000, "scanned_at")
    wanted = {
        line.strip()
        for line in DEPLOY_METRICS.read_text().splitlines()
        if line.startswith("scantrace_sink_")
    }
    assert wanted, "deploy/metrics.txt lists no sink series"
    assert wanted <= names(registry)
    assert all(n.startswith("scantrace_sink_") for n in names(registry))
    assert b"scantrace_sink_end_to_end_latency_seconds_bucket" in generate_latest(registry)


def test_two_sinks_on_two_registries_do_not_collide() -> None:
    SinkMetrics(CollectorRegistry())
    SinkMetrics(CollectorRegistry())
