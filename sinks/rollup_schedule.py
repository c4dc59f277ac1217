"""When the sink recomputes the daily rollup (`sinks.rollup`): every `rollup_seconds`, the
local days its inserts touched, plus at start the days an earlier run left dirty.

On a ClickHouse connection of its own (`rollup_writer`) a pass runs beside the loop: a
day's exact distinct counts take seconds once it holds millions of scans, and no insert
should wait that long behind them. Given one writer only, the sink runs a pass at a moment
with no insert in flight and holds its loop meanwhile (a client takes one call at a time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date

from sinks.flush import DirtyDays
from sinks.metrics import SinkMetrics
from sinks.rollup import refreshable
from sinks.writer import ScanWriter, SinkFatal, WriteError

__all__ = ["RollupSchedule"]

log = logging.getLogger("scantrace.sink")


class RollupSchedule:
    """Rollup passes over `dirty` days through `writer`; see the module docstring."""

    def __init__(
        self,
        writer: ScanWriter,
        metrics: SinkMetrics,
        dirty: DirtyDays,
        *,
        every_s: float,
        retention_days: int,
        clock: Callable[[], float],
        wall_ms: Callable[[], int],
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.dirty = dirty
        self.every_s = every_s
        self.retention_days = retention_days
        self.clock = clock
        self.wall_ms = wall_ms
        self._scan_dirty = True  # ask ClickHouse for days left dirty by an earlier run
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None

    async def run(self, *, force: bool = False) -> None:
        """One pass if one is due (or `force`). A transient failure leaves the days dirty
        for the next pass; a fatal one raises `SinkFatal`."""
        now = self.clock()
        if not force and now < self._next:
            return
        self._next = now + self.every_s
        wall = self.wall_ms()
        days: list[date] = []
        try:
            if self._scan_dirty:
                self.dirty.add(await asyncio.to_thread(self.writer.dirty_days))
                self._scan_dirty = False
            dirty = self.dirty.take()
            days = sorted(d for d in dirty if refreshable(d, wall, self.retention_days))
            if not days:
                self.metrics.rollup_last_success.set(time.time())
                return
            start = time.perf_counter()
            await asyncio.to_thread(self.writer.refresh_rollup, days)
        except WriteError as exc:
            if exc.kind == "fatal":
                raise SinkFatal(str(exc)) from exc
            self.dirty.add(days)
            self.metrics.rollup_failures.inc()
            log.warning("rollup refresh failed, will retry: %s", exc)
            return
        self.metrics.rollup_duration.observe(time.perf_counter() - start)
        self.metrics.rollup_days.inc(len(days))
        self.metrics.rollup_last_success.set(time.time())

    def beside(self) -> None:
        """Start a pass as a task when one is due and none runs; a fatal error of the last
        one raises here (`SinkFatal`)."""
        task = self._task
        if task is not None:
            if not task.done():
                return
            self._task = None
            task.result()
        if self.clock() >= self._next:
            self._task = asyncio.create_task(self.run())

    async def wait(self) -> None:
        """Wait for the pass running beside the loop, if any."""
        if self._task is not None:
            task, self._task = self._task, None
            await task
