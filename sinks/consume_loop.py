"""The sink: scans.enriched, premises and scans.dlq from Kafka into ClickHouse.

The loop (one asyncio task), one round at a time (`Sink.step`):
1. `getmany` a batch of records, buffer them per partition (`sinks.batch.Batcher`);
2. cut what is due into slices (exact `batch_rows` chunks; time-cut tails) and queue them;
3. write the queue in a worker thread (`sinks.flush.Flusher`: decode into columns, one
   insert per slice with its dedup token, bisect a chunk ClickHouse refuses down to the
   refused rows and dead-letter those), one flush in flight at a time, pausing the
   consumer while the queue is long or ClickHouse fails (`sinks.flow.FlowControl`);
4. when the flush has ended, commit its slices' offsets: only what ClickHouse confirmed;
5. every `rollup_seconds`, recompute the rollup of the local days the inserts touched
   (`sinks.rollup_schedule`);
6. every second, report each partition's lag.

When ClickHouse is down or answers with a transient error, the same slices are retried
with exponential backoff while consumption is paused. A fatal error (schema, credentials)
stops the sink with nothing committed (`SinkFatal`).

Kafka client: aiokafka, whose record batches are parsed in C (kafka-python parses them in
Python); the worker's frames of scans (`processors.records`) divide the per-record costs
(bench/RESULTS.md, "Sink").

Rebalances: the partitions taken away are forgotten (buffer and pending retry); whoever
gets them next reads from the last commit, and the tokens or the store's dedup make the
re-read harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from ingest.contract import now_ms
from ingest.lean_records import LEAN, install
from ingest.telemetry import Heartbeat, MetricsServer
from sinks.batch import Batcher, Kind, Slice
from sinks.flow import FlowControl
from sinks.flush import DirtyDays, Flusher
from sinks.metrics import SinkMetrics
from sinks.rollup_schedule import RollupSchedule
from sinks.settings import SinkSettings
from sinks.writer import ClickHouseWriter, ScanWriter, SinkFatal

__all__ = ["Sink", "SinkFatal", "serve"]

log = logging.getLogger("scantrace.sink")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.sink.forget([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Sink:
    """One sink consumer; `run` until `stop` is set. `writer` is the ClickHouse seam;
    `rollup_writer`, when given, a second connection on which rollups run beside the
    inserts."""

    def __init__(
        self,
        settings: SinkSettings,
        writer: ScanWriter,
        metrics: SinkMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
        rollup_writer: ScanWriter | None = None,
    ) -> None:
        self.settings = settings
        self.options = options = settings.sink
        self.writer = writer
        self.rollup_writer = rollup_writer  # None: rollups on `writer`, between inserts
        self.metrics = metrics
        self.clock = clock
        self.heartbeat = Heartbeat(clock)  # every round of the loop (`/healthz`)
        kafka = settings.kafka
        self.routes: dict[str, Kind] = {
            kafka.enriched: "scans",
            kafka.premises: "premises",
            kafka.dlq: "dead_letters",
        }
        self.batcher = Batcher(
            options.batch_rows,
            options.batch_seconds,
            options.max_wait_factor,
            framed=frozenset({kafka.enriched}),
        )
        retention = settings.clickhouse.retention_days
        dirty = DirtyDays()
        self.flusher = Flusher(
            writer,
            metrics,
            self.routes,
            batch_rows=options.batch_rows,
            retention_days=retention,
            wall_ms=wall_ms,
            dirty=dirty,
        )
        self.flow = FlowControl(options, metrics, clock)
        self.rollups = RollupSchedule(
            rollup_writer if rollup_writer is not None else writer,
            metrics,
            dirty,
            every_s=options.rollup_seconds,
            retention_days=retention,
            clock=clock,
            wall_ms=wall_ms,
        )
        self._stored: dict[tuple[str, int], int] = {}  # next offset not yet stored
        self._next_lag = 0.0
        self._consumer: Any = None

    # -- Kafka ----------------------------------------------------------------------------

    def _make_consumer(self) -> Any:
        o = self.options
        install()
        return AIOKafkaConsumer(
            **self.settings.kafka.aiokafka_config(),
            key_deserializer=LEAN,  # records without ConsumerRecord objects (lean_records)
            group_id=o.group_id,
            client_id="scantrace-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=o.isolation_level,
            max_partition_fetch_bytes=o.max_partition_fetch_bytes,
            fetch_max_bytes=o.fetch_max_bytes,
        )

    def attach(self, consumer: Any) -> None:
        """Use this consumer (aiokafka's interface: getmany, commit, pause, resume, paused,
        assignment, highwater, position); `run` attaches its own."""
        self._consumer = consumer

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions this consumer no longer owns: drop their buffer and pending retry."""
        if not partitions:
            return
        log.info("revoked %s", sorted(f"{t}[{p}]" for t, p in partitions))
        self.batcher.drop(partitions)
        gone = set(partitions)
        self.flow.forget(gone)
        for tp in gone:
            self._stored.pop(tp, None)
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.consumer_lag.remove(tp[0], str(tp[1]))

    def _owned(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def _caught_up(self, topic: str, partition: int) -> bool:
        """No full batch can form from what the partition holds now (buffered or not yet
        fetched): its tail may be cut by time. A real backlog (a restart replaying from the
        commit) waits for full batches, whose offset-derived cuts rebuild the same tokens;
        under a steady stream the tail goes after `batch_seconds`, not `max_wait`."""
        if self._consumer is None:
            return True
        high = self._consumer.highwater(TopicPartition(topic, partition))
        first = self.batcher.first_offset(topic, partition)
        if high is None or first is None:
            return True
        # In rows, at the mean rows per record of what is buffered (frames hold many).
        behind: float = (high - first) * self.batcher.rows_per_record(topic, partition)
        return behind < self.options.batch_rows

    async def _commit(self, slices: list[Slice]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for s in slices:
            offsets[(s.topic, s.partition)] = max(
                offsets.get((s.topic, s.partition), 0), s.last + 1
            )
        for tp, offset in offsets.items():
            self._stored[tp] = offset
        if self._consumer is None:
            return
        owned = self._owned()
        to_commit = {TopicPartition(*tp): o for tp, o in offsets.items() if tp in owned}
        if not to_commit:
            return
        try:
            await self._consumer.commit(to_commit)
        except KafkaError as exc:
            # Stored but not committed: whoever reads these records again stores nothing new.
            log.warning("offset commit failed (%s); the records will be read again", exc)

    async def _update_lag(self) -> None:
        if self._consumer is None:
            return
        pending = self.flow.pending()
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            key = (tp.topic, tp.partition)
            stored = self._stored.get(key)
            first = self.batcher.first_offset(*key)
            if stored is None:
                stored = first if first is not None else await self._consumer.position(tp)
            elif first is None and key not in pending:
                # Everything fetched is stored: the position is past what follows the last
                # record but holds nothing to store (a transaction's commit marker), else
                # an idle partition written under exactly_once shows a lag of 1 forever.
                stored = max(stored, await self._consumer.position(tp))
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - stored))

    # -- the loop -------------------------------------------------------------------------

    def _take(self, batches: dict[Any, list[Any]]) -> None:
        now = self.clock()
        for tp, records in batches.items():
            if not records:
                continue
            self.batcher.add(
                tp.topic,
                tp.partition,
                [r.offset for r in records],
                [r.value for r in records],
                now,
            )
            self.metrics.records_consumed.labels(tp.topic).inc(len(records))
        self.metrics.pending_rows.set(self.batcher.pending())

    async def settle(self) -> None:
        """Wait for the flush in flight, then commit it or schedule its retry."""
        if self.flow.inflight is None:
            return
        finished = await self.flow.finish(self._owned)
        if finished is not None:
            slices, done = finished
            self.flusher.count(done)
            await self._commit(slices)
        self.flow.apply(self._consumer)

    async def step(self) -> None:
        """One round: fetch and buffer, cut what is due, finish the flush in flight or
        start the next one, roll up, report lag. At most one flush is in flight: while
        ClickHouse stores one batch, the next records are fetched and buffered."""
        self.heartbeat.beat()
        flow = self.flow
        busy = flow.inflight is not None
        batches = await self._consumer.getmany(
            timeout_ms=20 if busy else 100 if flow.failing else 200,
            max_records=self.options.batch_rows,
        )
        self._take(batches)
        flow.queue.extend(self.batcher.cut(self.clock(), self._caught_up))
        if flow.inflight is not None and flow.inflight.done():
            await self.settle()
        now = self.clock()
        if flow.due(now):
            flow.start(self.flusher.write)
        flow.apply(self._consumer)
        if not flow.failing:
            if self.rollup_writer is not None:
                self.rollups.beside()
            elif flow.inflight is None:
                await self.rollups.run()  # the writer serves one call at a time
        if now >= self._next_lag:
            self._next_lag = now + 1.0
            await self._update_lag()

    async def drain(self, deadline: float) -> None:
        """On stop: write everything buffered, retrying until `deadline`."""
        flow = self.flow
        await self.settle()
        flow.queue.extend(self.batcher.cut(self.clock(), everything=True))
        while flow.queue and self.clock() < deadline:
            await asyncio.sleep(max(0.0, min(flow.retry_at, deadline) - self.clock()))
            if self.clock() >= deadline:
                break
            flow.start(self.flusher.write)
            await self.settle()
        if flow.queue:
            log.warning("stopping with %d records not stored (not committed)", flow.queued_rows())
            return
        await self.rollups.wait()  # a refresh on its own connection: the flushes went first
        await self.rollups.run(force=True)

    async def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, then flush, commit and close."""
        consumer = self._make_consumer()
        consumer.subscribe(list(self.routes), listener=_Listener(self))
        await consumer.start()
        self.attach(consumer)
        log.info(
            "sink started: %s -> ClickHouse %s, Kafka %s",
            ", ".join(self.routes),
            self.settings.clickhouse.database,
            self.settings.kafka.login(),
        )
        try:
            while not stop.is_set():
                await self.step()
            await self.drain(self.clock() + self.options.shutdown_timeout_seconds)
        finally:
            if self.flow.inflight is not None:  # an insert still on the wire: let it end
                with contextlib.suppress(Exception):
                    await self.flow.inflight
            with contextlib.suppress(Exception):  # the same for a rollup
                await self.rollups.wait()
            self._consumer = None
            await consumer.stop()
            await asyncio.to_thread(self.writer.close)
            if self.rollup_writer is not None:
                await asyncio.to_thread(self.rollup_writer.close)


def serve(
    settings: SinkSettings,
    registry: CollectorRegistry | None = None,
    *,
    writer: ScanWriter | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run one sink in this thread until `stop` is set (the CLI sets it on SIGTERM),
    serving /metrics on `settings.sink.metrics_port` unless it is 0."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = SinkMetrics(registry)
    # Two connections of our own, so that the rollup runs beside the inserts.
    rollups = ClickHouseWriter(settings.clickhouse) if writer is None else None
    sink = Sink(
        settings, writer or ClickHouseWriter(settings.clickhouse), metrics, rollup_writer=rollups
    )
    options = settings.sink
    server = None
    if options.metrics_port:
        server = MetricsServer(
            options.metrics_host,
            options.metrics_port,
            registry,
            sink.heartbeat,
            options.stall_seconds,
        )
    try:
        asyncio.run(sink.run(stop if stop is not None else threading.Event()))
    finally:
        if server is not None:
            server.stop()
