"""The tracer API's Prometheus metrics: one object, on a registry passed in (a fresh one
per test, so tests never share time series).

Labels are bounded sets (endpoint name, HTTP status, query kind), never a person, premises
or tracer id.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.telemetry import build_info

PREFIX: Final = "scantrace_api_"
LATENCY_BUCKETS_S: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
ROWS_BUCKETS: Final = (0, 1, 10, 100, 1000, 10_000, 100_000)


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = build_info(registry, PREFIX)
        self.requests = Counter(
            f"{PREFIX}requests_total",
            "Requests by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=registry,
        )
        self.query_latency = Histogram(
            f"{PREFIX}query_latency_seconds",
            "Time to answer a tracer query (ClickHouse included), by query",
            ["query"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.rows = Histogram(
            f"{PREFIX}answer_rows",
            "Rows (contacts or visitors) in a query's whole answer",
            ["query"],
            buckets=ROWS_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}queries_in_flight",
            "Tracer queries being answered",
            registry=registry,
        )
        self.audit_failures = Counter(
            f"{PREFIX}audit_failures_total",
            "Audit rows that could not be written (a streamed answer had left already;"
            " any other answer was replaced by 503)",
            registry=registry,
        )
        self.answer_cache = Counter(
            f"{PREFIX}answer_cache_total",
            "Lookups of whole answers kept for paging, by result (hit, miss)",
            ["result"],
            registry=registry,
        )
