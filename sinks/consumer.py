"""The sink: scans.enriched, premises and scans.dlq from Kafka into ClickHouse.

Loop (one asyncio task):
1. `getmany` a batch of records, buffer them per partition (`sinks.batch.Batcher`);
2. cut what is due into slices (exact `batch_rows` chunks; time-cut tails) and queue them;
3. write the queue in a worker thread: decode into columns, one insert per slice with its
   dedup token, bisect a chunk ClickHouse refuses down to the refused rows and
   dead-letter those. One flush is in flight at a time; meanwhile the loop goes on
   fetching and buffering, so Kafka parsing overlaps ClickHouse's work on the last batch.
   When the queue holds two batches the consumer pauses (bounded memory);
4. when the flush has ended, commit its slices' offsets: only what ClickHouse confirmed;
5. every `rollup_seconds`, recompute the rollup of the local days the inserts touched. On
   its own ClickHouse connection (`rollup_writer`) this runs beside the loop: a day's
   exact distinct counts take seconds once it holds millions of scans, and no insert
   should wait that long behind them.
   Given one writer only, the rollup waits for a moment with no insert in flight and
   holds the loop while it runs (a client takes one call at a time).

When ClickHouse is down or answers with a transient error, the whole assignment is
paused (`consumer.pause`: the group membership stays, nothing more is fetched), the same
slices are retried with exponential backoff, and consumption resumes after the first
success. A fatal error (schema, credentials) stops the sink with nothing committed.

Kafka client: aiokafka. Its record batches are parsed in C; on this project's 2-core
machine it fetched about 130,000 small records/s against kafka-python's 60,000 (with
`check_crcs=False`; 10,000 with its pure-Python CRC). With one record per scan that bound
the sink's speed; the worker's frames of scans (`processors.records`) divide the
per-record costs (bench/RESULTS.md, "Sink").

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
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from ingest.contract import now_ms
from ingest.lean_records import LEAN, install
from ingest.telemetry import Heartbeat, MetricsServer
from sinks.batch import (
    DEAD_LETTER_COLUMNS,
    RECEIVED_AT,
    SCAN_COLUMNS,
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
from sinks.rollup import refreshable, touched_days
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
        rollup_writer: ScanWriter | None = None,
    ) -> None:
        self.settings = settings
        self.options = settings.sink
        self.writer = writer
        self.rollup_writer = rollup_writer  # None: rollups on `writer`, between inserts
        self.metrics = metrics
        self.clock = clock
        self.wall_ms = wall_ms
        self.heartbeat = Heartbeat(clock)  # every round of the loop (`/healthz`)
        kafka = settings.kafka
        self.routes: dict[str, Kind] = {
            kafka.enriched: "scans",
            kafka.premises: "premises",
            kafka.dlq: "dead_letters",
        }
        self.batcher = Batcher(
            self.options.batch_rows,
            self.options.batch_seconds,
            self.options.max_wait_factor,
            framed=frozenset({kafka.enriched}),
        )
        self._queue: list[Slice] = []  # cut, waiting for the writer, in offset order
        self._inflight: asyncio.Task[list[tuple[Chunk, int]]] | None = None
        self._inflight_slices: list[Slice] = []
        self._failing = False  # the last flush failed transiently: paused, retrying
        self._retry_at = 0.0
        self._backoff = self.options.retry_initial_seconds
        self._paused = False
        self._stored: dict[tuple[str, int], int] = {}  # next offset not yet stored
        self._dirty: set[date] = set()  # written by the flush thread: under `_dirty_lock`
        self._dirty_lock = threading.Lock()
        self._rollup_task: asyncio.Task[None] | None = None
        self._scan_dirty = True  # ask ClickHouse for days left dirty by an earlier run
        self._next_rollup = 0.0
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

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """Partitions this consumer no longer owns: drop their buffer and pending retry."""
        if not partitions:
            return
        log.info("revoked %s", sorted(f"{t}[{p}]" for t, p in partitions))
        self.batcher.drop(partitions)
        gone = set(partitions)
        self._queue = [s for s in self._queue if (s.topic, s.partition) not in gone]
        for tp in gone:
            self._stored.pop(tp, None)
            with contextlib.suppress(KeyError):  # no lag reported for it yet
                self.metrics.consumer_lag.remove(tp[0], str(tp[1]))

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

    def _queued_rows(self) -> int:
        return sum(s.rows for s in self._queue) + sum(s.rows for s in self._inflight_slices)

    def _flow(self) -> None:
        """Pause fetching while ClickHouse fails, or while two batches wait behind the
        one in flight (memory stays bounded by about partitions + 3 batches)."""
        queued = sum(s.rows for s in self._queue)  # not counting the flush in flight
        want = self._failing or queued >= 2 * self.options.batch_rows
        if self._consumer is None:
            return
        if want:
            assigned = self._consumer.assignment()
            if assigned:  # again each round: partitions assigned since start paused too
                self._consumer.pause(*assigned)
        elif self._paused:
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)
        self._paused = want
        self.metrics.paused.set(1 if self._failing else 0)

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
        pending = {(s.topic, s.partition) for s in chain(self._queue, self._inflight_slices)}
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
        if not chunk.size:
            return []
        data = chunk.columnar()
        try:
            self._insert(chunk.table, chunk.columns, data, chunk.token)
        except WriteError as exc:
            self.metrics.insert_failures.labels(exc.kind).inc()
            if exc.kind != "terminal":
                raise
            if chunk.size == 1:
                value = chunk.raw(0)
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
                        chunk.first_event_id(),
                    )
                ]
            first, second = chunk.halves()
            refused = self._insert_chunk(first, now) + self._insert_chunk(second, now)
            if len(refused) == chunk.size >= ALL_REFUSED_FATAL:
                # Not a bad row but a bad schema or client: keep the data, stop.
                raise WriteError("fatal", exc.cause, f"every row of {chunk.token} refused") from exc
            return refused
        if chunk.table == "scans":
            self._after_scans(data, now)
        return []

    def _after_scans(self, data: list[list[Any]], now: int) -> None:
        scanned = data[SCANNED_AT]
        done = self.wall_ms()
        self.metrics.end_to_end.observe_since(scanned, done, "scanned_at")
        # clickhouse-driver replaced the NULLs of this Nullable column by 0 while encoding.
        self.metrics.end_to_end.observe_since(
            list(filter(None, data[RECEIVED_AT])), done, "received_at"
        )
        touched = touched_days(scanned, now, self.settings.clickhouse.retention_days)
        with self._dirty_lock:
            self._dirty |= touched

    def _insert_tails(self, chunks: list[Chunk], now: int) -> bool:
        """The scans of several partitions' tails (one `Batcher.cut`) in one insert, token
        the join of theirs: under a steady stream every partition's tail is due each
        `batch_seconds`, and ClickHouse pays per insert besides per row (a part of `scans`
        and of each view's table, each merged later). False when ClickHouse refused the
        insert as a whole (terminal): insert them one by one."""
        columns = zip(*(c.columnar() for c in chunks), strict=True)
        data = [list(chain.from_iterable(column)) for column in columns]
        token = "+".join(c.token for c in chunks)
        try:
            self._insert("scans", SCAN_COLUMNS, data, token)
        except WriteError as exc:
            self.metrics.insert_failures.labels(exc.kind).inc()
            if exc.kind != "terminal":
                raise
            return False
        self._after_scans(data, now)
        return True

    def write(self, slices: list[Slice]) -> list[tuple[Chunk, int]]:
        """Write every slice (raises `WriteError` unless all were stored); returns each
        chunk with its count of dead letters written for it."""
        now = self.wall_ms()
        done: list[tuple[Chunk, int]] = []
        chunks = [(s, build_chunk(self.routes[s.topic], s, now)) for s in slices]
        # Tails of one cut, in slice order, packed into groups of at most `batch_rows`.
        groups: dict[int, list[list[Chunk]]] = {}
        for s, chunk in chunks:
            if s.tail_of >= 0 and chunk.table == "scans" and chunk.size:
                cut = groups.setdefault(s.tail_of, [[]])
                if cut[-1] and sum(c.size for c in cut[-1]) + chunk.size > self.options.batch_rows:
                    cut.append([])
                cut[-1].append(chunk)
        stored: set[int] = set()  # id() of the chunks stored together
        for group in (g for cut in groups.values() for g in cut):
            if len(group) > 1 and self._insert_tails(group, now):
                stored.update(map(id, group))
        for _, chunk in chunks:
            refused = [] if id(chunk) in stored else self._insert_chunk(chunk, now)
            dead = chunk.dead + refused
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
            written = chunk.size
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

    def _start_flush(self) -> None:
        slices, self._queue = self._queue, []
        self._inflight_slices = slices
        self._inflight = asyncio.create_task(asyncio.to_thread(self.write, slices))

    async def settle(self) -> None:
        """Wait for the flush in flight, then commit it or schedule its retry."""
        task, slices = self._inflight, self._inflight_slices
        if task is None:
            return
        try:
            done = await task
        except WriteError as exc:
            self._inflight, self._inflight_slices = None, []
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            self.metrics.retries.inc()
            if not self._failing:
                log.warning("ClickHouse failing: consumption paused")
            log.warning("insert failed, retrying in %.1f s: %s", self._backoff, exc)
            owned = self._owned()
            # The same slices again, first: the same tokens, so whatever landed adds nothing.
            self._queue = [s for s in slices if (s.topic, s.partition) in owned] + self._queue
            self._failing = True
            self._retry_at = self.clock() + self._backoff
            self._backoff = min(self._backoff * 2, self.options.retry_max_seconds)
            self._flow()
            return
        self._inflight, self._inflight_slices = None, []
        if self._failing:
            log.info("ClickHouse answers again: consumption resumed")
        self._failing = False
        self._backoff = self.options.retry_initial_seconds
        self._count(done)
        await self._commit(slices)
        self._flow()

    def _owned(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    async def _rollup(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now < self._next_rollup:
            return
        self._next_rollup = now + self.options.rollup_seconds
        wall = self.wall_ms()
        retention = self.settings.clickhouse.retention_days
        writer = self.rollup_writer if self.rollup_writer is not None else self.writer
        days: list[date] = []
        try:
            if self._scan_dirty:
                found = await asyncio.to_thread(writer.dirty_days)
                with self._dirty_lock:
                    self._dirty.update(found)
                self._scan_dirty = False
            with self._dirty_lock:
                dirty, self._dirty = self._dirty, set()
            days = sorted(d for d in dirty if refreshable(d, wall, retention))
            if not days:
                self.metrics.rollup_last_success.set(time.time())
                return
            start = time.perf_counter()
            await asyncio.to_thread(writer.refresh_rollup, days)
        except WriteError as exc:
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            with self._dirty_lock:
                self._dirty.update(days)
            self.metrics.rollup_failures.inc()
            log.warning("rollup refresh failed, will retry: %s", exc)
            return
        self.metrics.rollup_duration.observe(time.perf_counter() - start)
        self.metrics.rollup_days.inc(len(days))
        self.metrics.rollup_last_success.set(time.time())

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
        """One round: fetch and buffer, cut what is due, finish the flush in flight or
        start the next one, roll up, report lag. At most one flush is in flight: while
        ClickHouse stores one batch, the next records are fetched and buffered."""
        self.heartbeat.beat()
        busy = self._inflight is not None
        batches = await self._consumer.getmany(
            timeout_ms=20 if busy else 100 if self._failing else 200,
            max_records=self.options.batch_rows,
        )
        self._take(batches)
        now = self.clock()
        self._queue.extend(self.batcher.cut(now, self._caught_up))
        if self._inflight is not None and self._inflight.done():
            await self.settle()
        now = self.clock()
        if self._inflight is None and self._queue and now >= self._retry_at:
            self._start_flush()
        self._flow()
        if not self._failing:
            if self.rollup_writer is not None:
                self._rollup_beside()
            elif self._inflight is None:
                await self._rollup()  # the writer serves one call at a time
        if now >= self._next_lag:
            self._next_lag = now + 1.0
            await self._update_lag()

    def _rollup_beside(self) -> None:
        """Start a rollup when one is due and none runs; a fatal error of the last one
        stops the sink here (`SinkFatal`)."""
        task = self._rollup_task
        if task is not None:
            if not task.done():
                return
            self._rollup_task = None
            task.result()
        if self.clock() >= self._next_rollup:
            self._rollup_task = asyncio.create_task(self._rollup())

    async def _rollup_done(self) -> None:
        if self._rollup_task is not None:
            task, self._rollup_task = self._rollup_task, None
            await task

    async def drain(self, deadline: float) -> None:
        """On stop: write everything buffered, retrying until `deadline`."""
        await self.settle()
        self._queue.extend(self.batcher.cut(self.clock(), everything=True))
        while self._queue and self.clock() < deadline:
            await asyncio.sleep(max(0.0, min(self._retry_at, deadline) - self.clock()))
            if self.clock() >= deadline:
                break
            self._start_flush()
            await self.settle()
        if self._queue:
            log.warning("stopping with %d records not stored (not committed)", self._queued_rows())
            return
        await self._rollup_done()  # a refresh on its own connection: the flushes went first
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
            if self._inflight is not None:  # an insert still on the wire: let it end
                with contextlib.suppress(Exception):
                    await self._inflight
            with contextlib.suppress(Exception):  # the same for a rollup
                await self._rollup_done()
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
