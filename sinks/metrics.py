"""The sink's Prometheus metrics: one object, on a registry passed in
(several components and tests share a process, each with its own series).

Labels are bounded sets only: a table, a topic and partition, an error kind, a reason
code. `in = stored + dead-lettered + skipped` is checkable per topic from
`records_consumed_total`, `rows_written_total`, `dead_letters_total` and
`records_skipped_total` (a dead letter read from scans.dlq is a row written to
dead_letters).

The end-to-end latency histogram gets one observation per stored scan, 150,000 a second
at full speed: `BulkHistogram` takes a whole column at once (one sort, one bisection
per bucket) instead of one `observe` call per row.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.telemetry import BulkHistogram, build_info

PREFIX: Final = "scantrace_sink_"
BATCH_BUCKETS: Final = (1, 10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000)
INSERT_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# From a scan to its row in ClickHouse: seconds when live, hours or days for late uploads.
E2E_BUCKETS_S: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0,
)  # fmt: skip


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = build_info(registry, PREFIX)
        self.records_consumed = Counter(
            f"{PREFIX}records_consumed_total",
            "Kafka records read, by topic",
            ["topic"],
            registry=registry,
        )
        self.rows_written = Counter(
            f"{PREFIX}rows_written_total",
            "Rows ClickHouse confirmed, by table (a deduplicated retry counts again)",
            ["table"],
            registry=registry,
        )
        self.batches = Counter(
            f"{PREFIX}batches_total",
            "Inserts ClickHouse confirmed, by table",
            ["table"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            f"{PREFIX}batch_rows",
            "Rows per confirmed insert",
            ["table"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.insert_duration = Histogram(
            f"{PREFIX}insert_duration_seconds",
            "Time from sending an insert until ClickHouse confirmed it",
            ["table"],
            buckets=INSERT_BUCKETS_S,
            registry=registry,
        )
        self.insert_failures = Counter(
            f"{PREFIX}insert_failures_total",
            "Failed inserts, by kind (transient: retried; terminal: bisected; fatal: stop)",
            ["kind"],
            registry=registry,
        )
        self.retries = Counter(
            f"{PREFIX}retries_total",
            "Flushes retried after a transient failure",
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{PREFIX}dead_letters_total",
            "Records the sink itself could not store, written to dead_letters, by reason",
            ["reason"],
            registry=registry,
        )
        self.records_skipped = Counter(
            f"{PREFIX}records_skipped_total",
            "Records read and deliberately not stored (premises tombstones), by reason",
            ["reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}consumer_lag",
            "Records in the partition not yet stored (high watermark minus stored offset)",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_success = Gauge(
            f"{PREFIX}last_success_timestamp_seconds",
            "Unix time of the last insert ClickHouse confirmed",
            registry=registry,
        )
        self.paused = Gauge(
            f"{PREFIX}paused",
            "1 while consumption is paused because ClickHouse is failing",
            registry=registry,
        )
        self.pending_rows = Gauge(
            f"{PREFIX}pending_rows",
            "Records buffered and not yet inserted",
            registry=registry,
        )
        self.rollup_days = Counter(
            f"{PREFIX}rollup_days_refreshed_total",
            "Local days recomputed in the premises_daily rollup",
            registry=registry,
        )
        self.rollup_duration = Histogram(
            f"{PREFIX}rollup_refresh_duration_seconds",
            "Time to recompute the rollup of the dirty days",
            buckets=INSERT_BUCKETS_S,
            registry=registry,
        )
        # A pass that found nothing to recompute counts: the reports are then up to date.
        self.rollup_last_success = Gauge(
            f"{PREFIX}rollup_last_success_timestamp_seconds",
            "Unix time at which the last rollup pass ended with every touched day recomputed",
            registry=registry,
        )
        self.rollup_failures = Counter(
            f"{PREFIX}rollup_failures_total",
            "Rollup passes that failed (the days stay dirty and are tried again)",
            registry=registry,
        )
        self.end_to_end = BulkHistogram(
            f"{PREFIX}end_to_end_latency_seconds",
            "From a scan's time (since=scanned_at) or its arrival at the gateway "
            "(since=received_at) until ClickHouse confirmed its row",
            E2E_BUCKETS_S,
            registry,
            label="since",
        )
