"""Fakes for the `ScanWriter` seam (STYLE.md 10), for tests and demos without ClickHouse
and for injecting failures in front of the real writer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ingest.contract import SCHEMA_VERSION
from ingest.premises import DWELL_MINUTES
from processors.records import EnrichedScan
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


def enriched(
    event_id: str,
    person_id: str,
    premises_id: str,
    scanned_at: int,
    *,
    kind: str = "checkin",
    received_at: int | None = None,
    processed_at: int | None = None,
    category: str = "market",
    district: str = "Phan Rang-Thap Cham",
) -> bytes:
    """The wire bytes of one enriched scan, as the worker publishes them."""
    return EnrichedScan(
        event_id=event_id,
        person_id=person_id,
        premises_id=premises_id,
        scanned_at=scanned_at,
        kind="checkout" if kind == "checkout" else "checkin",
        gateway_id="gw-test",
        received_at=received_at,
        schema=SCHEMA_VERSION,
        premises_name=f"Premises {premises_id}",
        category=category,
        district=district,
        ward="Ward 1",
        agency="Agency A",
        dwell_minutes=DWELL_MINUTES.get(category, 30),
        processed_at=processed_at if processed_at is not None else scanned_at + 1000,
    ).encode()
