"""The `QueryRunner` seam: the code above it never knows which client library is below.

`ClickHouseRunner` runs the SQL of `tracing.sql` over clickhouse-driver's native
protocol; `tracing.testing` has a fake. The tracer API runs queries from several requests
at once: `RunnerPool` hands each its own runner (a driver client is not thread-safe).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from clickhouse_driver import Client

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from tracing.sql import QUERY_SETTINGS

Row = tuple[Any, ...]


class QueryRunner(Protocol):
    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        """Rows of a SELECT with bound parameters."""
        ...

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert rows (one batch) into `table`."""
        ...

    def close(self) -> None: ...

    def sibling(self) -> QueryRunner | None:
        """A runner on a connection of its own, for one query to run beside this runner's
        (owned and closed by this one), or None when there is none to have."""
        ...


class ClickHouseRunner:
    """One clickhouse-driver connection; not for concurrent use (see `RunnerPool`), plus a
    second one made on first use of `sibling()`."""

    def __init__(self, settings: ClickHouseSettings, client: Client | None = None) -> None:
        self.settings = settings
        self._client = client or connect(settings)
        self._sibling: ClickHouseRunner | None = None

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        rows = self._client.execute(sql, dict(params), settings=QUERY_SETTINGS)
        return [tuple(r) for r in rows]

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        cols = ", ".join(f"`{c}`" for c in columns)
        self._client.execute(f"INSERT INTO {table} ({cols}) VALUES", list(rows))

    def sibling(self) -> ClickHouseRunner:
        if self._sibling is None:
            self._sibling = ClickHouseRunner(self.settings)
        return self._sibling

    def close(self) -> None:
        try:
            self._client.disconnect()
        finally:
            if self._sibling is not None:
                self._sibling.close()
                self._sibling = None


class RunnerPool:
    """At most `size` runners, made on demand by `factory`, each used by one thread at a
    time."""

    def __init__(self, factory: Callable[[], QueryRunner], size: int = 4) -> None:
        self._factory = factory
        self._idle: queue.LifoQueue[QueryRunner] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[QueryRunner] = []
        self._lock = threading.Lock()

    @contextmanager
    def runner(self) -> Iterator[QueryRunner]:
        with self._slots:
            try:
                r = self._idle.get_nowait()
            except queue.Empty:
                r = self._factory()
                with self._lock:
                    self._all.append(r)
            try:
                yield r
            except BaseException:
                # The connection may be mid-answer: never hand it to the next caller.
                with self._lock:
                    self._all.remove(r)
                r.close()
                raise
            self._idle.put(r)

    def close(self) -> None:
        with self._lock:
            runners, self._all = self._all, []
        for r in runners:
            r.close()
