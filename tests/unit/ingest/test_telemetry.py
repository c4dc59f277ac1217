"""ingest.telemetry: build info on every component's registry, the bulk histogram, the loop
heartbeat and the /healthz + /metrics server of the worker and the sink (a real HTTP server
on loopback)."""

from __future__ import annotations

import json
import platform
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Histogram

from ingest.gateway.metrics import GatewayMetrics
from ingest.telemetry import BulkHistogram, Heartbeat, MetricsServer, package_version
from processors.metrics import WorkerMetrics
from sinks.metrics import SinkMetrics
from tracing.api.metrics import ApiMetrics


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(
    ("component", "prefix"),
    [
        (GatewayMetrics, "scantrace_gateway_"),
        (WorkerMetrics, "scantrace_worker_"),
        (SinkMetrics, "scantrace_sink_"),
        (ApiMetrics, "scantrace_api_"),
    ],
)
def test_every_component_exports_its_build_info(component: type, prefix: str) -> None:
    registry = CollectorRegistry()
    component(registry)
    labels = {"version": package_version(), "python_version": platform.python_version()}
    assert registry.get_sample_value(f"{prefix}build_info", labels) == 1.0
    assert package_version() != "unknown"  # the test environment installs scantrace


def test_heartbeat_age_follows_the_clock() -> None:
    clock = Clock()
    beat = Heartbeat(clock)
    clock.t += 7
    assert beat.age() == 7
    beat.beat()
    assert beat.age() == 0


def test_healthz_is_ok_while_the_loop_turns_and_503_once_it_stalls() -> None:
    clock = Clock()
    beat = Heartbeat(clock)
    registry = CollectorRegistry()
    SinkMetrics(registry)
    server = MetricsServer("127.0.0.1", 0, registry, beat, stall_seconds=30)
    try:
        clock.t += 29
        status, body = get(server.port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "loop_age_seconds": 29, "stall_seconds": 30}
        clock.t += 1
        status, body = get(server.port, "/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "stalled"
        beat.beat()
        assert get(server.port, "/healthz")[0] == 200
        status, body = get(server.port, "/metrics")
        assert status == 200
        assert b"scantrace_sink_build_info{" in body
    finally:
        server.stop()


# From a scan to its processing: seconds when live, hours or days for offline uploads.
BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86_400.0)


def test_bulk_histogram_without_a_label_matches_prometheus_histogram() -> None:
    registry = CollectorRegistry()
    bulk = BulkHistogram("bulk_seconds", "bulk", BUCKETS_S, registry)
    plain = Histogram("plain_seconds", "plain", buckets=BUCKETS_S, registry=registry)
    now = 1_700_000_000_000
    times = [now - ms for ms in (0, 99, 100, 250, 1_000, 59_999, 3_600_000, 10**9)]
    bulk.observe_since(times, now)
    bulk.observe_since([], now)
    for t in times:
        plain.observe((now - t) / 1000)
    for bound in [*(str(float(b)) for b in BUCKETS_S), "+Inf"]:
        assert registry.get_sample_value("bulk_seconds_bucket", {"le": bound}) == (
            registry.get_sample_value("plain_seconds_bucket", {"le": bound})
        ), bound
    assert registry.get_sample_value("bulk_seconds_count") == len(times)
    assert registry.get_sample_value("bulk_seconds_sum") == pytest.approx(
        registry.get_sample_value("plain_seconds_sum")
    )


def test_bulk_histogram_with_a_label_equals_one_observation_per_value() -> None:
    registry = CollectorRegistry()
    bulk = BulkHistogram("bulk_seconds", "x", BUCKETS_S, registry, label="since")
    plain = Histogram("plain_seconds", "x", ["since"], buckets=BUCKETS_S, registry=registry)
    now = 10_000_000
    times = [now - d for d in (0, 1, 99, 100, 101, 250, 999, 1000, 59_999, 90_000_000, -5000)]
    bulk.observe_since(times, now, "scanned_at")
    bulk.observe_since(times[:3], now, "scanned_at")
    bulk.observe_since([], now, "scanned_at")
    for t in times + times[:3]:
        plain.labels("scanned_at").observe((now - t) / 1000)

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"since": "scanned_at", **labels})

    for le in [*(str(float(b)) for b in BUCKETS_S), "+Inf"]:
        assert get("bulk_seconds_bucket", le=le) == get("plain_seconds_bucket", le=le), le
    assert get("bulk_seconds_count") == get("plain_seconds_count") == 14
    assert bulk.count("scanned_at") == 14 and bulk.count("received_at") == 0
    assert abs((get("bulk_seconds_sum") or 0) - (get("plain_seconds_sum") or 0)) < 1e-6
