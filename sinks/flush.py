"""A flush: the sink's cut slices written to ClickHouse, in a worker thread.

Each slice becomes a chunk (`sinks.batch.build_chunk`: decoded into columns, with its
dedup token) and one insert; the scans of several partitions' tails cut together go in
one insert (ClickHouse pays per insert besides per row). A chunk ClickHouse refuses as
terminal is bisected down to the refused rows, which become dead letters; a transient or
fatal error propagates (`WriteError`) and the caller retries the same slices, whose
tokens make whatever already landed add nothing.

A flush's metrics are counted by `count`, once, when the whole flush succeeded however
often it was retried; the insert timings and failures are counted as they happen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from itertools import chain
from typing import Any, Final

from sinks.batch import (
    DEAD_LETTER_COLUMNS,
    RECEIVED_AT,
    SCAN_COLUMNS,
    SCANNED_AT,
    Chunk,
    Kind,
    Row,
    Slice,
    build_chunk,
    dead_row,
)
from sinks.metrics import SinkMetrics
from sinks.rollup import touched_days
from sinks.writer import ScanWriter, WriteError

__all__ = ["ALL_REFUSED_FATAL", "DirtyDays", "Flusher", "Written"]

log = logging.getLogger("scantrace.sink")
# A chunk this large whose every row ClickHouse refuses points at the schema or the
# client, not at the rows: the sink stops instead of dead-lettering the stream.
ALL_REFUSED_FATAL: Final = 100

# Each chunk of a flush with the number of dead letters written for it.
Written = list[tuple[Chunk, int]]


class DirtyDays:
    """The local days whose rollup is out of date: added to by the flush thread, taken
    by the rollup."""

    def __init__(self) -> None:
        self._days: set[date] = set()
        self._lock = threading.Lock()

    def add(self, days: Iterable[date]) -> None:
        with self._lock:
            self._days.update(days)

    def take(self) -> set[date]:
        with self._lock:
            days, self._days = self._days, set()
        return days


class Flusher:
    """Writes slices through the `ScanWriter` seam; see the module docstring."""

    def __init__(
        self,
        writer: ScanWriter,
        metrics: SinkMetrics,
        routes: Mapping[str, Kind],
        *,
        batch_rows: int,
        retention_days: int,
        wall_ms: Callable[[], int],
        dirty: DirtyDays,
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.routes = routes
        self.batch_rows = batch_rows
        self.retention_days = retention_days
        self.wall_ms = wall_ms
        self.dirty = dirty

    def write(self, slices: list[Slice]) -> Written:
        """Write every slice (raises `WriteError` unless all were stored); returns each
        chunk with its count of dead letters written for it."""
        now = self.wall_ms()
        done: Written = []
        chunks = [(s, build_chunk(self.routes[s.topic], s, now)) for s in slices]
        # Tails of one cut, in slice order, packed into groups of at most `batch_rows`.
        groups: dict[int, list[list[Chunk]]] = {}
        for s, chunk in chunks:
            if s.tail_of >= 0 and chunk.table == "scans" and chunk.size:
                cut = groups.setdefault(s.tail_of, [[]])
                if cut[-1] and sum(c.size for c in cut[-1]) + chunk.size > self.batch_rows:
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
                self._insert_dead(chunk, dead)
            done.append((chunk, len(dead)))
        return done

    def count(self, done: Written) -> None:
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

    def _insert_dead(self, chunk: Chunk, dead: list[Row]) -> None:
        """The chunk's dead letters into `dead_letters`, token derived from the chunk's."""
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

    def _after_scans(self, data: list[list[Any]], now: int) -> None:
        scanned = data[SCANNED_AT]
        done = self.wall_ms()
        self.metrics.end_to_end.observe_since(scanned, done, "scanned_at")
        # clickhouse-driver replaced the NULLs of this Nullable column by 0 while encoding.
        self.metrics.end_to_end.observe_since(
            list(filter(None, data[RECEIVED_AT])), done, "received_at"
        )
        self.dirty.add(touched_days(scanned, now, self.retention_days))

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
