"""The sink: scans.enriched, premises and scans.dlq from Kafka into ClickHouse.

Loop (one asyncio task; ClickHouse calls run in a worker thread so that aiokafka keeps
fetching while an insert is on the wire):
1. `getmany` a batch of records, buffer them per partition (`sinks.batch.Batcher`);
2. cut what is due into slices (exact `batch_rows` chunks; time-cut tails);
3. write them: decode into columns, one insert per slice with its dedup token, bisect a
   chunk ClickHouse refuses down to the refused rows and dead-letter those;
4. commit the slices' offsets, only now that ClickHouse confirmed every insert;
5. every `rollup_seconds`, recompute the rollup of the local days the inserts touched.

When ClickHouse is down or answers with a transient error, the whole assignment is
paused (`consumer.pause`: the group membership stays, nothing more is fetched), the same
slices are retried with exponential backoff, and consumption resumes after the first
success. A fatal error (schema, credentials) stops the sink with nothing committed.

Kafka client: aiokafka. Its record batches are parsed in C; on this project's 2-core
machine it fetched about 130,000 small records/s against kafka-python's 60,000 (with
`check_crcs=False`; 10,000 with its pure-Python CRC). The Kafka client, not ClickHouse,
bounds the sink's speed: see bench/bench_sink.py.

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
from datetime import date
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server

from sinks.batch import (
    DEAD_LETTER_COLUMNS,
    RECEIVED_AT,
    SCANNED_AT,
    Batcher,
    Chunk,
    Kind,
    Row,
    Slice,
    build_chunk,
    dead_row,
)
from sinks.metrics import SinkMetrics
from sinks.rollup import now_ms, refreshable, touched_days
from sinks.settings import SinkSettings
from sinks.writer import ClickHouseWriter, ScanWriter, WriteError

log = logging.getLogger("scantrace.sink")
# A chunk this large whose every row ClickHouse refuses points at the schema or the
# client, not at the rows: the sink stops instead of dead-lettering the stream.
ALL_REFUSED_FATAL = 100


class SinkFatal(RuntimeError):
    """ClickHouse refuses writes for a reason retrying cannot fix; nothing was committed."""


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.sink.forget([(tp.topic, tp.partition) for tp in revoked])

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Sink:
    """One sink consumer; `run` until `stop` is set. `writer` is the ClickHouse seam."""

    def __init__(
        self,
        settings: SinkSettings,
        writer: ScanWriter,
        metrics: SinkMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.settings = settings
        self.options = settings.sink
        self.writer = writer
        self.metrics = metrics
        self.clock = clock
        self.wall_ms = wall_ms
        kafka = settings.kafka
        self.routes: dict[str, Kind] = {
            kafka.enriched: "scans",
            kafka.premises: "premises",
            kafka.dlq: "dead_letters",
        }
        self.batcher = Batcher(
            self.options.batch_rows, self.options.batch_seconds, self.options.max_wait_factor
        )
        self._retry: list[Slice] | None = None
        self._retry_at = 0.0
        self._backoff = self.options.retry_initial_seconds
        self._paused = False
        self._stored: dict[tuple[str, int], int] = {}  # next offset not yet stored
        self._dirty: set[date] = set()
        self._scan_dirty = True  # ask ClickHouse for days left dirty by an earlier run
        self._next_rollup = 0.0
        self._next_lag = 0.0
        self._consumer: Any = None

    # -- Kafka ----------------------------------------------------------------------------

    def _make_consumer(self) -> Any:
        o = self.options
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.servers(),
            group_id=o.group_id,
            client_id="scantrace-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=o.isolation_level,
            max_partition_fetch_bytes=o.max_partition_fetch_bytes,
            fetch_max_bytes=o.fetch_max_bytes,
        )

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions this consumer no longer owns: drop their buffer and pending retry."""
        if not partitions:
            return
        log.info("revoked %s", sorted(f"{t}[{p}]" for t, p in partitions))
        self.batcher.drop(partitions)
        gone = set(partitions)
        if self._retry is not None:
            self._retry = [s for s in self._retry if (s.topic, s.partition) not in gone] or None
        for tp in gone:
            self._stored.pop(tp, None)
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.consumer_lag.remove(tp[0], str(tp[1]))

    def _caught_up(self, topic: str, partition: int) -> bool:
        if self._consumer is None:
            return True
        high = self._consumer.highwater(TopicPartition(topic, partition))
        last = self.batcher.last_offset(topic, partition)
        return high is None or last is None or last + 1 >= high

    def _pause(self) -> None:
        assigned = self._consumer.assignment() if self._consumer is not None else set()
        if assigned:
            self._consumer.pause(*assigned)
        if not self._paused:
            log.warning("ClickHouse failing: consumption paused")
        self._paused = True
        self.metrics.paused.set(1)

    def _resume(self) -> None:
        if self._paused and self._consumer is not None:
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)
            log.info("ClickHouse answers again: consumption resumed")
        self._paused = False
        self.metrics.paused.set(0)

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
        owned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
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
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            key = (tp.topic, tp.partition)
            stored = self._stored.get(key)
            if stored is None:
                first = self.batcher.first_offset(*key)
                stored = first if first is not None else await self._consumer.position(tp)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - stored))

    # -- ClickHouse (runs in a worker thread) ----------------------------------------------

    def _insert(
        self, table: str, columns: tuple[str, ...], data: list[list[Any]], token: str
    ) -> None:
        start = time.perf_counter()
        self.writer.insert(table, columns, data, token)
        self.metrics.insert_duration.labels(table).observe(time.perf_counter() - start)
        self.metrics.batches.labels(table).inc()
        self.metrics.batch_rows.labels(table).observe(len(data[0]) if data else 0)
        self.metrics.last_success.set(time.time())

    def _insert_chunk(self, chunk: Chunk, now: int) -> list[Row]:
        """Insert; on a terminal error bisect down to the refused rows and return them as
        dead-letter rows. Transient and fatal errors propagate."""
        if not chunk.rows:
            return []
        data = chunk.columnar()
        try:
            self._insert(chunk.table, chunk.columns, data, chunk.token)
        except WriteError as exc:
            self.metrics.insert_failures.labels(exc.kind).inc()
            if exc.kind != "terminal":
                raise
            if len(chunk.rows) == 1:
                value = chunk.values[0]
                log.warning("row refused by ClickHouse, dead-lettered: %s", exc)
                return [
                    dead_row(
                        "clickhouse_rejected",
                        value,
                        chunk.topic,
                        chunk.partition,
                        chunk.offsets[0],
                        now,
                        str(exc.cause),
                        chunk.rows[0][0] if chunk.table == "scans" else "",
                    )
                ]
            first, second = chunk.halves()
            refused = self._insert_chunk(first, now) + self._insert_chunk(second, now)
            if len(refused) == len(chunk.rows) >= ALL_REFUSED_FATAL:
                # Not a bad row but a bad schema or client: keep the data, stop.
                raise WriteError("fatal", exc.cause, f"every row of {chunk.token} refused") from exc
            return refused
        if chunk.table == "scans":
            self._after_scans(data, now)
        return []

    def _after_scans(self, data: list[list[Any]], now: int) -> None:
        scanned = data[SCANNED_AT]
        done = self.wall_ms()
        self.metrics.end_to_end.observe_since("scanned_at", scanned, done)
        # clickhouse-driver replaced the NULLs of this Nullable column by 0 while encoding.
        self.metrics.end_to_end.observe_since(
            "received_at", list(filter(None, data[RECEIVED_AT])), done
        )
        self._dirty |= touched_days(scanned, now, self.settings.clickhouse.retention_days)

    def write(self, slices: list[Slice]) -> list[tuple[Chunk, int]]:
        """Write every slice (raises `WriteError` unless all were stored); returns each
        chunk with its count of dead letters written for it."""
        now = self.wall_ms()
        done: list[tuple[Chunk, int]] = []
        for s in slices:
            chunk = build_chunk(self.routes[s.topic], s, now)
            dead = chunk.dead + self._insert_chunk(chunk, now)
            if dead:
                try:
                    self._insert(
                        "dead_letters",
                        DEAD_LETTER_COLUMNS,
                        list(map(list, zip(*dead, strict=True))),
                        f"{chunk.token}:dead",
                    )
                except WriteError as exc:
                    self.metrics.insert_failures.labels(exc.kind).inc()
                    if exc.kind == "terminal":  # our own rows refused: the schema is wrong
                        raise WriteError("fatal", exc.cause, "dead letters") from exc
                    raise
            done.append((chunk, len(dead)))
        return done

    def _count(self, done: list[tuple[Chunk, int]]) -> None:
        """Metrics of a flush that succeeded as a whole (counted once, however retried)."""
        for chunk, dead in done:
            written = len(chunk.rows)
            for row in chunk.dead:
                self.metrics.dead_letters.labels(row[1]).inc()
            rejected = dead - len(chunk.dead)
            if rejected:
                self.metrics.dead_letters.labels("clickhouse_rejected").inc(rejected)
                written -= rejected
            if written:
                self.metrics.rows_written.labels(chunk.table).inc(written)
            if dead:
                self.metrics.rows_written.labels("dead_letters").inc(dead)
            if chunk.skipped:
                self.metrics.records_skipped.labels("tombstone").inc(chunk.skipped)

    async def _flush(self, slices: list[Slice]) -> None:
        try:
            done = await asyncio.to_thread(self.write, slices)
        except WriteError as exc:
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            self.metrics.retries.inc()
            log.warning("insert failed, retrying in %.1f s: %s", self._backoff, exc)
            self._retry = slices
            self._retry_at = self.clock() + self._backoff
            self._backoff = min(self._backoff * 2, self.options.retry_max_seconds)
            self._pause()
            return
        self._retry = None
        self._backoff = self.options.retry_initial_seconds
        self._count(done)
        await self._commit(slices)
        self._resume()

    async def _rollup(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now < self._next_rollup:
            return
        self._next_rollup = now + self.options.rollup_seconds
        wall = self.wall_ms()
        retention = self.settings.clickhouse.retention_days
        days: list[date] = []
        try:
            if self._scan_dirty:
                found = await asyncio.to_thread(self.writer.dirty_days)
                self._dirty.update(found)
                self._scan_dirty = False
            days = sorted(d for d in self._dirty if refreshable(d, wall, retention))
            self._dirty.clear()
            if not days:
                return
            start = time.perf_counter()
            await asyncio.to_thread(self.writer.refresh_rollup, days)
        except WriteError as exc:
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            self._dirty.update(days)
            log.warning("rollup refresh failed, will retry: %s", exc)
            return
        self.metrics.rollup_duration.observe(time.perf_counter() - start)
        self.metrics.rollup_days.inc(len(days))

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

    async def step(self) -> None:
        """One round: fetch, cut, write what is due, roll up, report lag."""
        retrying = self._retry is not None
        batches = await self._consumer.getmany(
            timeout_ms=100 if retrying else 200, max_records=self.options.batch_rows
        )
        self._take(batches)
        now = self.clock()
        if self._retry is not None:
            if self._paused:
                self._pause()  # partitions assigned since the pause start paused too
            if now >= self._retry_at:
                await self._flush(self._retry)
        else:
            slices = self.batcher.cut(now, self._caught_up)
            if slices:
                await self._flush(slices)
        if self._retry is None:
            await self._rollup()
        if now >= self._next_lag:
            self._next_lag = now + 1.0
            await self._update_lag()

    async def drain(self, deadline: float) -> None:
        """On stop: write everything buffered, retrying until `deadline`."""
        slices = (self._retry or []) + self.batcher.cut(self.clock(), everything=True)
        self._retry = None
        while slices and self.clock() < deadline:
            await self._flush(slices)
            if self._retry is None:
                break
            await asyncio.sleep(max(0.0, min(self._retry_at, deadline) - self.clock()))
            slices = self._retry
        if self._retry is not None:
            log.warning(
                "stopping with %d records not stored (not committed)", self.batcher.pending()
            )
            return
        await self._rollup(force=True)

    def attach(self, consumer: Any) -> None:
        """Use this consumer (aiokafka's interface: getmany, commit, pause, resume, paused,
        assignment, highwater, position); `run` attaches its own."""
        self._consumer = consumer

    async def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, then flush, commit and close."""
        consumer = self._make_consumer()
        consumer.subscribe(list(self.routes), listener=_Listener(self))
        await consumer.start()
        self.attach(consumer)
        log.info(
            "sink started: %s -> ClickHouse %s",
            ", ".join(self.routes),
            self.settings.clickhouse.database,
        )
        try:
            while not stop.is_set():
                await self.step()
            await self.drain(self.clock() + self.options.shutdown_timeout_seconds)
        finally:
            self._consumer = None
            await consumer.stop()
            await asyncio.to_thread(self.writer.close)


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
    server = None
    if settings.sink.metrics_port:
        server, _ = start_http_server(
            settings.sink.metrics_port, addr=settings.sink.metrics_host, registry=registry
        )
    sink = Sink(settings, writer or ClickHouseWriter(settings.clickhouse), metrics)
    try:
        asyncio.run(sink.run(stop if stop is not None else threading.Event()))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
