"""The worker's Prometheus metrics: one object, on a registry passed in
(several components and tests share a process, each with its own series).

Names are the contract of `deploy/metrics.txt` (dashboards and alerts read them). Labels
are bounded: a district, a dead-letter reason, a table, a topic and partition; never a
person or premises id.

Accounting over the scans of `scans.raw`, checkable at any time for a worker that started
from empty state (a restarted worker also holds what an earlier run parked):

    events_in == scans_enriched + duplicates + repeats + dead_letters + parked_scans

`scans_enriched` includes released parked scans (`released_total` counts those again);
records of the premises topic are counted apart (`premises_records_total`), their dead
letters too, so they do not enter the identity.

The latency histograms get one observation per enriched scan, tens of thousands a second:
`BulkHistogram` takes a batch's times at once (one sort, one bisection per bucket).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingest.telemetry import BulkHistogram, build_info

PREFIX: Final = "scantrace_worker_"
BATCH_BUCKETS_S: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# From a scan (or its arrival at the gateway) to the worker: seconds when live, hours or
# days for offline uploads and for scans parked until their premises was registered.
LAG_BUCKETS_S: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0,
    259_200.0,
)  # fmt: skip


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.build_info = build_info(registry, PREFIX)
        self.events_in = Counter(
            f"{PREFIX}events_in_total",
            "Records read from scans.raw (every one ends enriched, dropped, dead-lettered "
            "or parked)",
            registry=registry,
        )
        self.scans_enriched = Counter(
            f"{PREFIX}scans_enriched_total",
            "Scans written to scans.enriched, released parked scans included, by district",
            ["district"],
            registry=registry,
        )
        self.duplicates = Counter(
            f"{PREFIX}duplicates_total",
            "Scans dropped because their event_id was seen within the dedup horizon",
            registry=registry,
        )
        self.repeats = Counter(
            f"{PREFIX}repeats_total",
            "Scans dropped as repeats (a double tap within the repeat window)",
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{PREFIX}dead_letters_total",
            "Scans written to scans.dlq, by reason",
            ["reason"],
            registry=registry,
        )
        self.parked = Gauge(
            f"{PREFIX}parked_scans",
            "Scans waiting for their premises to be registered (this worker's partitions)",
            registry=registry,
        )
        self.released = Counter(
            f"{PREFIX}released_total",
            "Parked scans that came out enriched when their premises arrived",
            registry=registry,
        )
        self.premises_records = Counter(
            f"{PREFIX}premises_records_total",
            "Records read from the premises topic, by result (upserted, deleted, invalid, "
            "exception)",
            ["result"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            f"{PREFIX}consumer_lag",
            "Records in a source partition not yet processed (high watermark minus position)",
            ["topic", "partition"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            f"{PREFIX}batch_duration_seconds",
            "Time to process one fetched batch: decode, dedup, enrich, produce and wait for "
            "Kafka's acknowledgement",
            buckets=BATCH_BUCKETS_S,
            registry=registry,
        )
        self.event_time_lag = BulkHistogram(
            f"{PREFIX}event_time_lag_seconds",
            "From a scan's scanned_at to its enrichment by the worker",
            LAG_BUCKETS_S,
            registry,
        )
        self.arrival_lag = BulkHistogram(
            f"{PREFIX}arrival_lag_seconds",
            "From a scan's arrival at the gateway (received_at) to its enrichment",
            LAG_BUCKETS_S,
            registry,
        )
        self.table_entries = Gauge(
            f"{PREFIX}table_entries",
            "Keys held in the worker's state tables (this worker's partitions; for seen and "
            "last_kept, also keys past the dedup horizon until their slots are reused)",
            ["table"],
            registry=registry,
        )
        # With the consumer lag, tells a worker that is alive but stuck from an idle one
        # (alerts.yml, ScantraceWorkerNoProgress); 0 until the first batch.
        self.last_progress = Gauge(
            f"{PREFIX}last_progress_timestamp_seconds",
            "Unix time at which the last fetched batch was processed and handed to Kafka",
            registry=registry,
        )
        self._lag_labels: set[tuple[str, str]] = set()

    def set_lags(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the consumer lag series (partitions that moved away disappear)."""
        labels = {(topic, str(partition)) for topic, partition in lags}
        for gone in self._lag_labels - labels:
            self.consumer_lag.remove(*gone)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)
        self._lag_labels = labels
