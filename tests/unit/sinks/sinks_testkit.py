"""Builders shared by the sink's unit tests (imported by module name; unique in tests/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from sink_kit import enriched

from ingest.kafka_settings import KafkaSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.consume_loop import Sink
from sinks.metrics import SinkMetrics
from sinks.settings import SinkOptions, SinkSettings
from sinks.testing import MemoryWriter
from sinks.writer import ScanWriter

NOW = 1_900_000_000_000  # 2030-03-17T17:46:40Z; fixed, the tests never read the clock
KAFKA = KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="t.")
ENRICHED = KAFKA.enriched
PREMISES = KAFKA.premises
DLQ = KAFKA.dlq


def scan_value(i: int, *, now: int = NOW) -> bytes:
    return enriched(f"e{i}", f"u{i % 7}", f"P{i % 3}", now - i * 1000, received_at=now - 500)


@dataclass
class Record:
    offset: int
    value: bytes | None
    topic: str = ENRICHED
    partition: int = 0


@dataclass
class FakeConsumer:
    """aiokafka's consumer as the sink uses it; `feed` queues records for `getmany`."""

    queued: list[dict[Any, list[Record]]] = field(default_factory=list)
    commits: list[dict[Any, int]] = field(default_factory=list)
    paused_tps: set[Any] = field(default_factory=set)
    assigned: set[Any] = field(
        default_factory=lambda: (
            {TopicPartition(ENRICHED, p) for p in range(2)}
            | {TopicPartition(PREMISES, 0), TopicPartition(DLQ, 0)}
        )
    )
    high: dict[Any, int] = field(default_factory=dict)
    pause_calls: int = 0

    def feed(self, topic: str, partition: int, first: int, values: list[bytes | None]) -> None:
        tp = TopicPartition(topic, partition)
        records = [Record(first + i, v, topic, partition) for i, v in enumerate(values)]
        self.queued.append({tp: records})
        self.high[tp] = max(self.high.get(tp, 0), first + len(values))

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        if not self.queued:
            return {}
        batch = self.queued.pop(0)
        held = {tp: recs for tp, recs in batch.items() if tp in self.paused_tps}
        if held:  # a paused partition's records wait for `resume`, as in Kafka
            self.queued.insert(0, held)
        return {tp: recs for tp, recs in batch.items() if tp not in self.paused_tps}

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def pause(self, *tps: Any) -> None:
        self.pause_calls += 1
        self.paused_tps.update(tps)

    def resume(self, *tps: Any) -> None:
        self.paused_tps.difference_update(tps)

    def paused(self) -> set[Any]:
        return set(self.paused_tps)

    def highwater(self, tp: Any) -> int | None:
        return self.high.get(tp)

    async def position(self, tp: Any) -> int:
        return self.high.get(tp, 0)

    def committed_offset(self, topic: str, partition: int) -> int | None:
        tp = TopicPartition(topic, partition)
        found = [c[tp] for c in self.commits if tp in c]
        return found[-1] if found else None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_sink(
    writer: ScanWriter | None = None, *, rollup_writer: ScanWriter | None = None, **options: Any
) -> tuple[Sink, FakeConsumer, MemoryWriter | Any, Clock, CollectorRegistry]:
    registry = CollectorRegistry()
    clock = Clock()
    defaults: dict[str, Any] = {"batch_rows": 4, "batch_seconds": 1.0, "retry_initial_seconds": 0.5}
    settings = SinkSettings(
        kafka=KAFKA,
        clickhouse=ClickHouseSettings(url="clickhouse://127.0.0.1:9/t"),
        sink=SinkOptions(**{**defaults, **options}),
    )
    w = writer if writer is not None else MemoryWriter()
    sink = Sink(
        settings,
        w,
        SinkMetrics(registry),
        clock=clock,
        wall_ms=lambda: NOW,
        rollup_writer=rollup_writer,
    )
    consumer = FakeConsumer()
    sink.attach(consumer)
    return sink, consumer, w, clock, registry
