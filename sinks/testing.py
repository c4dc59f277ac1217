"""Fakes of the `ScanWriter` seam, shipped so that code written against the seam can be
tested without ClickHouse: a writer in memory, and one that injects failures in front of
another."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sinks.writer import ErrorKind, ScanWriter, WriteError


@dataclass
class MemoryWriter:
    """Keeps inserted rows per table; a token seen before for a table adds nothing, like
    ClickHouse with `insert_deduplication_token`."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    tokens: dict[str, set[str]] = field(default_factory=dict)
    inserts: list[tuple[str, str, int]] = field(default_factory=list)  # table, token, rows
    refreshed: list[list[date]] = field(default_factory=list)
    dirty: list[date] = field(default_factory=list)
    closed: bool = False

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        rows = list(zip(*data, strict=True)) if data else []
        self.inserts.append((table, token, len(rows)))
        seen = self.tokens.setdefault(table, set())
        if token in seen:
            return
        seen.add(token)
        self.tables.setdefault(table, []).extend(rows)

    def refresh_rollup(self, days: Sequence[date]) -> None:
        self.refreshed.append(list(days))

    def dirty_days(self) -> list[date]:
        return list(self.dirty)

    def close(self) -> None:
        self.closed = True


class FlakyWriter:
    """Wraps a writer and makes its next `failures` inserts fail with `kind`.

    With `after_write`, the insert reaches the wrapped writer first and only the answer
    is lost (a timeout after ClickHouse stored the rows): the retry must add nothing.
    `fail_on` limits the failures to inserts whose table is in it."""

    def __init__(
        self,
        inner: ScanWriter,
        failures: int,
        kind: ErrorKind = "transient",
        *,
        after_write: bool = False,
        fail_on: frozenset[str] = frozenset({"scans"}),
    ) -> None:
        self.inner = inner
        self.remaining = failures
        self.kind: ErrorKind = kind
        self.after_write = after_write
        self.fail_on = fail_on
        self.failed = 0
        self._lock = threading.Lock()

    def _should_fail(self, table: str) -> bool:
        with self._lock:
            if table in self.fail_on and self.remaining > 0:
                self.remaining -= 1
                self.failed += 1
                return True
            return False

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        fail = self._should_fail(table)
        if fail and not self.after_write:
            raise WriteError(self.kind, ConnectionError("injected failure"), f"insert into {table}")
        self.inner.insert(table, columns, data, token)
        if fail:
            raise WriteError(
                self.kind, TimeoutError("injected: answer lost"), f"insert into {table}"
            )

    def refresh_rollup(self, days: Sequence[date]) -> None:
        self.inner.refresh_rollup(days)

    def dirty_days(self) -> list[date]:
        return self.inner.dirty_days()

    def close(self) -> None:
        self.inner.close()
