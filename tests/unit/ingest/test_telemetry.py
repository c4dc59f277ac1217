"""ingest.telemetry: build info on every component's registry, the loop heartbeat and the
/healthz + /metrics server of the worker and the sink (a real HTTP server on loopback)."""

from __future__ import annotations

import json
import platform
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from ingest.gateway.metrics import GatewayMetrics
from ingest.telemetry import Heartbeat, MetricsServer, package_version
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
