"""Every metric the dashboards and alerts read (deploy/metrics.txt) is really exported by
the component that owns its prefix."""

from __future__ import annotations

from deploy_testkit import metrics_listed
from prometheus_client import CollectorRegistry

from ingest.gateway.metrics import GatewayMetrics
from processors.metrics import WorkerMetrics
from scantrace.pipeline import RunMetrics
from sinks.metrics import SinkMetrics
from tracing.api.metrics import ApiMetrics

SERIES_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def exported_series() -> set[str]:
    """Series names as Prometheus stores them, from each component's metrics object
    built on a fresh registry (labelled metrics emit nothing before first use, so the
    names come from the families, not the samples)."""
    names: set[str] = set()
    for component in (GatewayMetrics, WorkerMetrics, SinkMetrics, ApiMetrics, RunMetrics):
        registry = CollectorRegistry()
        component(registry)
        for family in registry.collect():
            names.update(family.name + s for s in SERIES_SUFFIXES.get(family.type, ("",)))
    return names


def test_every_listed_metric_is_exported_by_the_code() -> None:
    listed = set(metrics_listed())
    assert listed, "deploy/metrics.txt lists nothing"
    missing = sorted(listed - exported_series())
    assert missing == [], f"dashboards or alerts read metrics no component exports: {missing}"
