"""The ClickHouse schema as migrations, one source for the single node and the cluster."""

from __future__ import annotations

from dataclasses import dataclass

from sinks.clickhouse_settings import ClickHouseSettings


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "scans",
        (
            """CREATE TABLE IF NOT EXISTS {db}.scans {on_cluster} (
                event_id String,
                person_id String,
                premises_id String,
                scanned_at DateTime64(3, 'UTC'),
                kind Enum8('checkin' = 1, 'checkout' = 2),
                gateway_id LowCardinality(String),
                received_at DateTime64(3, 'UTC'),
                processed_at DateTime64(3, 'UTC'),
                stored_at DateTime64(3, 'UTC') DEFAULT now64(3),
                premises_name String,
                category LowCardinality(String),
                district LowCardinality(String),
                ward LowCardinality(String),
                agency LowCardinality(String),
                dwell_minutes UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toDate(scanned_at)
            ORDER BY (premises_id, scanned_at, event_id)
            TTL toDateTime(scanned_at) + INTERVAL {retention_days} DAY""",
        ),
    ),
    # tracing: one row per tracer query (CLI or API), kept beyond the scans' TTL.
    Migration(
        2,
        "audit_log",
        (
            """CREATE TABLE IF NOT EXISTS {db}.audit_log {on_cluster} (
                audit_id UUID,
                at DateTime64(3, 'UTC'),
                actor String,
                role LowCardinality(String),
                channel LowCardinality(String),
                action LowCardinality(String),
                subject_id String,
                period_from DateTime64(3, 'UTC'),
                period_to DateTime64(3, 'UTC'),
                rule String,
                rows UInt32,
                ok UInt8,
                error String,
                duration_ms UInt32
            )
            ENGINE = MergeTree
            PARTITION BY toYYYYMM(at)
            ORDER BY (at, audit_id)""",
        ),
    ),
]


def render(m: Migration, settings: ClickHouseSettings) -> list[str]:
    on_cluster = f"ON CLUSTER `{settings.cluster}`" if settings.cluster else ""
    return [
        s.format(
            db=f"`{settings.database}`",
            on_cluster=on_cluster,
            retention_days=settings.retention_days,
        )
        for s in m.statements
    ]
