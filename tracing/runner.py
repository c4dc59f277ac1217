"""The `QueryRunner` seam: the code above it never knows which client library is below.

`ClickHouseRunner` runs the SQL of `tracing.sql` over clickhouse-driver's native
protocol, every query under the same settings (`tracing.sql.query_settings`: the spill
thresholds and, when given, the caller's time and memory limits); `tracing.testing` has a
fake. The tracer API runs queries from several requests at once: `RunnerPool` hands each
its own runner (a driver client is not thread-safe).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from clickhouse_driver import Client, errors

from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from tracing.sql import query_settings

Row = tuple[Any, ...]

# Rows a block of a streamed answer (`iter_query`): what the driver holds at once.
STREAM_BLOCK_ROWS: Final = 8192
# ClickHouse's codes for a query stopped by its limits: TIMEOUT_EXCEEDED, TOO_SLOW (the
# estimated time is past the limit), MEMORY_LIMIT_EXCEEDED.
_TIME_CODES: Final = frozenset({159, 160})
_MEMORY_CODES: Final = frozenset({241})


class QueryLimitExceeded(RuntimeError):
    """The server stopped a query at its time or memory limit (`QueryLimits`): the
    question is too big for the limits, not wrong; the message names the limit."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Per-query limits sent with every query (0: none)."""

    max_execution_s: float = 0
    max_memory_bytes: int = 0


class QueryRunner(Protocol):
    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        """Rows of a SELECT with bound parameters."""
        ...

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        """The rows of a SELECT as they arrive, a block at a time. A runner whose
        iterator was not read to its end is mid-answer: close it (`RunnerPool` does when
        the block that reads raises)."""
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

    def __init__(
        self,
        settings: ClickHouseSettings,
        client: Client | None = None,
        limits: QueryLimits | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits or QueryLimits()
        self._settings = query_settings(self.limits.max_execution_s, self.limits.max_memory_bytes)
        # The driver's socket timeout outlasts the server's own time limit, so that the
        # server's TIMEOUT_EXCEEDED (which names the limit) arrives first.
        timeout = max(300.0, self.limits.max_execution_s + 60)
        self._client = client or connect(settings, send_receive_timeout=timeout)
        self._sibling: ClickHouseRunner | None = None
        self._open: object | None = None  # the token of a streamed answer not read to its end

    def query(self, sql: str, params: Mapping[str, object]) -> list[Row]:
        self._end_open()
        try:
            rows = self._client.execute(sql, dict(params), settings=self._settings)
        except errors.ServerException as exc:
            raise self._limit_error(exc) from exc
        return [tuple(r) for r in rows]

    def iter_query(self, sql: str, params: Mapping[str, object]) -> Iterator[Row]:
        self._end_open()
        settings = {**self._settings, "max_block_size": STREAM_BLOCK_ROWS}
        try:
            rows = self._client.execute_iter(sql, dict(params), settings=settings)
        except errors.ServerException as exc:
            raise self._limit_error(exc) from exc
        token = self._open = object()
        return self._rows(rows, token)

    def _rows(self, rows: Iterator[Any], token: object) -> Generator[Row, None, None]:
        try:
            for r in rows:
                yield tuple(r)
        except errors.ServerException as exc:
            raise self._limit_error(exc) from exc
        if self._open is token:  # read to the end: the connection is free again
            self._open = None

    def _end_open(self) -> None:
        """A streamed answer left unread leaves the connection mid-answer: drop it (the
        server stops the query), the driver reconnects for the next one."""
        if self._open is not None:
            self._open = None
            self._client.disconnect()

    def _limit_error(self, exc: Exception) -> Exception:
        """The server's error, or `QueryLimitExceeded` naming the limit it hit."""
        code = getattr(exc, "code", None)
        if code in _TIME_CODES:
            limit = f"its time limit of {self.limits.max_execution_s:g} s"
        elif code in _MEMORY_CODES:
            mib = self.limits.max_memory_bytes / 2**20
            limit = f"its memory limit of {mib:.0f} MiB" if mib else "the server's memory limit"
        else:
            return exc
        return QueryLimitExceeded(f"the query was stopped at {limit}")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        self._end_open()
        cols = ", ".join(f"`{c}`" for c in columns)
        self._client.execute(f"INSERT INTO {table} ({cols}) VALUES", list(rows))

    def cancel(self) -> None:
        """From another thread: ask the server to stop the query this runner (or its
        sibling) is running, with a Cancel packet on its own connection: no privilege is
        needed, where `KILL QUERY` needs to read `system.processes`. The running call then
        ends early, with an error or with the rows read so far: the caller must know that
        it cancelled."""
        for runner in (self, self._sibling):
            if runner is None:
                continue
            connection = runner._client.connection
            if connection.connected and connection.is_query_executing:
                connection.send_cancel()

    def sibling(self) -> ClickHouseRunner:
        if self._sibling is None:
            self._sibling = ClickHouseRunner(self.settings, limits=self.limits)
        return self._sibling

    def close(self) -> None:
        try:
            self._open = None
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
        r = self.acquire()
        try:
            yield r
        except BaseException:
            # The connection may be mid-answer: never hand it to the next caller.
            self.release(r, reusable=False)
            raise
        self.release(r, reusable=True)

    def acquire(self) -> QueryRunner:
        """A runner for the caller alone (blocks while `size` are out); give it back
        with `release`, from any thread."""
        self._slots.acquire()
        try:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                r = self._factory()
            with self._lock:
                self._all.append(r)
            return r
        except BaseException:
            self._slots.release()
            raise

    def release(self, r: QueryRunner, *, reusable: bool) -> None:
        """Give back a runner; `reusable=False` closes it (it may be mid-answer)."""
        try:
            if reusable:
                self._idle.put(r)
            else:
                with self._lock:
                    if r in self._all:
                        self._all.remove(r)
                r.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            runners, self._all = self._all, []
        for r in runners:
            r.close()
