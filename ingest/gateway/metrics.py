"""The gateway's Prometheus metrics: one object, on a registry passed in
(several components and tests share a process, each with its own series).

Labels are bounded sets only (an HTTP status, a contract reason code): never a person,
premises or gateway id.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.telemetry import build_info

PREFIX: Final = "scantrace_gateway_"
LATENCY_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS: Final = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = build_info(registry, PREFIX)
        self.requests = Counter(
            f"{PREFIX}requests_total",
            "POST /v1/scans requests by HTTP status",
            ["status"],
            registry=registry,
        )
        self.scans_accepted = Counter(
            f"{PREFIX}scans_accepted_total",
            "Scans published to the raw topic and acknowledged by Kafka",
            registry=registry,
        )
        self.scans_rejected = Counter(
            f"{PREFIX}scans_rejected_total",
            "Scans rejected by the contract (and dead-lettered), by reason",
            ["reason"],
            registry=registry,
        )
        self.publish_latency = Histogram(
            f"{PREFIX}publish_latency_seconds",
            "Time from handing a request's scans to Kafka until every one was acknowledged",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}batch_size_scans",
            "Scans per decoded request",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.body_bytes = Counter(
            f"{PREFIX}request_body_bytes_total",
            "Request body bytes received (as sent, before gzip decoding)",
            registry=registry,
        )
        self.refused = Counter(
            f"{PREFIX}requests_refused_total",
            "POST /v1/scans requests refused as a whole (nothing of them published), by reason",
            ["reason"],
            registry=registry,
        )
        self.bytes_in_flight = Gauge(
            f"{PREFIX}bytes_in_flight",
            "Request bytes held: bodies as received plus what gzip decoding produced",
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}requests_in_flight",
            "POST /v1/scans requests being processed",
            registry=registry,
        )
