"""Flow control of the sink: the queue of cut slices, the one flush in flight, the retry
of a failed flush with exponential backoff, and pausing the consumer.

One flush is in flight at a time; meanwhile the loop goes on fetching and buffering, so
Kafka parsing overlaps ClickHouse's work on the last batch. The consumer pauses (every
assigned partition: the group membership stays, nothing more is fetched) while two
batches wait behind the one in flight, which bounds memory to about partitions + 3
batches, and while ClickHouse fails; it resumes after the first success.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from itertools import chain
from typing import Any

from sinks.batch import Slice
from sinks.flush import Written
from sinks.metrics import SinkMetrics
from sinks.settings import SinkOptions
from sinks.writer import SinkFatal, WriteError

__all__ = ["FlowControl"]

log = logging.getLogger("scantrace.sink")

Partition = tuple[str, int]


class FlowControl:
    """What waits to be written, what is being written, and whether to fetch more."""

    def __init__(
        self, options: SinkOptions, metrics: SinkMetrics, clock: Callable[[], float]
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.clock = clock
        self.queue: list[Slice] = []  # cut, waiting for the writer, in offset order
        self.inflight: asyncio.Task[Written] | None = None
        self.inflight_slices: list[Slice] = []
        self.failing = False  # the last flush failed transiently: paused, retrying
        self.retry_at = 0.0
        self.backoff = options.retry_initial_seconds
        self.paused = False

    def queued_rows(self) -> int:
        """Rows cut and not yet stored (the flush in flight included)."""
        return sum(s.rows for s in chain(self.queue, self.inflight_slices))

    def pending(self) -> set[Partition]:
        """The partitions with slices queued or in flight."""
        return {(s.topic, s.partition) for s in chain(self.queue, self.inflight_slices)}

    def forget(self, gone: set[Partition]) -> None:
        """Drop the queued slices of partitions this consumer no longer owns."""
        self.queue = [s for s in self.queue if (s.topic, s.partition) not in gone]

    def due(self, now: float) -> bool:
        """A flush may start: none in flight, something queued, no retry to wait for."""
        return self.inflight is None and bool(self.queue) and now >= self.retry_at

    def start(self, write: Callable[[list[Slice]], Written]) -> None:
        """Hand every queued slice to `write`, in a worker thread."""
        slices, self.queue = self.queue, []
        self.inflight_slices = slices
        self.inflight = asyncio.create_task(asyncio.to_thread(write, slices))

    async def finish(
        self, owned: Callable[[], set[Partition]]
    ) -> tuple[list[Slice], Written] | None:
        """Wait for the flush in flight (there must be one): its slices and what was
        written, or None when it failed transiently and its slices of partitions still
        `owned` are queued again, first, for a retry after the backoff. A fatal error
        raises `SinkFatal`."""
        task, slices = self.inflight, self.inflight_slices
        assert task is not None
        try:
            done = await task
        except WriteError as exc:
            self.inflight, self.inflight_slices = None, []
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            self.metrics.retries.inc()
            if not self.failing:
                log.warning("ClickHouse failing: consumption paused")
            log.warning("insert failed, retrying in %.1f s: %s", self.backoff, exc)
            mine = owned()
            # The same slices again, first: the same tokens, so whatever landed adds nothing.
            self.queue = [s for s in slices if (s.topic, s.partition) in mine] + self.queue
            self.failing = True
            self.retry_at = self.clock() + self.backoff
            self.backoff = min(self.backoff * 2, self.options.retry_max_seconds)
            return None
        self.inflight, self.inflight_slices = None, []
        if self.failing:
            log.info("ClickHouse answers again: consumption resumed")
        self.failing = False
        self.backoff = self.options.retry_initial_seconds
        return slices, done

    def apply(self, consumer: Any) -> None:
        """Pause fetching while ClickHouse fails or while two batches wait behind the one
        in flight; resume otherwise. `consumer`: aiokafka's (assignment, pause, paused,
        resume), or None before one is attached."""
        queued = sum(s.rows for s in self.queue)  # not counting the flush in flight
        want = self.failing or queued >= 2 * self.options.batch_rows
        if consumer is None:
            return
        if want:
            assigned = consumer.assignment()
            if assigned:  # again each round: partitions assigned since start paused too
                consumer.pause(*assigned)
        elif self.paused:
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
        self.paused = want
        self.metrics.paused.set(1 if self.failing else 0)
