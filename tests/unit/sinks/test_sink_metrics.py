"""SinkMetrics on a fresh registry: the names deploy/ reads, and the bulk histogram."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from sinks.metrics import E2E_BUCKETS_S, BulkHistogram, SinkMetrics

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
    m.end_to_end.observe_since("scanned_at", [1000], 2000)
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


def test_bulk_histogram_equals_one_observation_per_value() -> None:
    registry = CollectorRegistry()
    bulk = BulkHistogram("bulk_seconds", "x", "since", E2E_BUCKETS_S, registry)
    plain = Histogram("plain_seconds", "x", ["since"], buckets=E2E_BUCKETS_S, registry=registry)
    now = 10_000_000
    times = [now - d for d in (0, 1, 99, 100, 101, 250, 999, 1000, 59_999, 90_000_000, -5000)]
    bulk.observe_since("scanned_at", times, now)
    bulk.observe_since("scanned_at", times[:3], now)
    bulk.observe_since("scanned_at", [], now)
    for t in times + times[:3]:
        plain.labels("scanned_at").observe((now - t) / 1000)

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"since": "scanned_at", **labels})

    for le in [*(str(float(b)) for b in E2E_BUCKETS_S), "+Inf"]:
        assert get("bulk_seconds_bucket", le=le) == get("plain_seconds_bucket", le=le), le
    assert get("bulk_seconds_count") == get("plain_seconds_count") == 14
    assert abs((get("bulk_seconds_sum") or 0) - (get("plain_seconds_sum") or 0)) < 1e-6
