"""The ClickHouse writer behind the `ScanWriter` seam, and error classification.

Every failure is labelled where it enters our code, so that each layer above knows whether
to retry, dead-letter or stop:
- `transient`: ClickHouse unreachable, overloaded, timing out, a replica or Keeper away.
  The sink pauses its consumer, retries the same chunks with backoff, and resumes.
- `terminal`: the data itself is refused (a value that does not fit its column, detected
  by clickhouse-driver while encoding the block or by the server while parsing it). The
  sink bisects the chunk down to the refused rows and dead-letters only those.
- `fatal`: the schema or the credentials are wrong (unknown table or column, access
  denied, a server certificate the CA file does not verify). Retrying cannot help and
  dead-lettering would empty the stream into the dead letters: the sink stops without
  committing, and an operator fixes it.
A server error code not listed is taken as transient: the sink keeps the data and
retries, and `scantrace_sink_insert_failures_total{kind="transient"}` raises the alarm.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from datetime import date
from typing import Any, Final, Literal, Protocol

from clickhouse_driver import Client, errors

from ingest.contract import now_ms
from sinks.batch import insert_sql
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.rollup import (
    PeriodKind,
    counted_periods,
    counts_sql,
    dirty_days_sql,
    local_day,
    refresh_sql,
    sets_sql,
    uncounted_sql,
)

ErrorKind = Literal["transient", "terminal", "fatal"]

# ClickHouse error codes (`SELECT errorCodeToName(n)` names them).
TERMINAL_CODES: Final = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        190,  # SIZES_OF_ARRAYS_DONT_MATCH
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        386,  # NO_COMMON_TYPE
        691,  # UNKNOWN_ELEMENT_OF_ENUM
    }
)
FATAL_CODES: Final = frozenset(
    {
        8,  # THERE_IS_NO_COLUMN
        10,  # NOT_FOUND_COLUMN_IN_BLOCK
        16,  # NO_SUCH_COLUMN_IN_TABLE
        20,  # NUMBER_OF_COLUMNS_DOESNT_MATCH
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        62,  # SYNTAX_ERROR
        81,  # UNKNOWN_DATABASE
        115,  # UNKNOWN_SETTING
        164,  # READONLY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        291,  # DATABASE_ACCESS_DENIED
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        701,  # CLUSTER_DOESNT_EXIST
    }
)
# Raised by clickhouse-driver (or the stdlib under it) while encoding a block: the data.
_DATA_ERRORS: Final = (
    TypeError,
    ValueError,
    OverflowError,
    struct.error,
    AttributeError,
    KeyError,
    IndexError,
    errors.LogicalError,
    errors.TypeMismatchError,
)
_NETWORK_ERRORS: Final = (
    errors.NetworkError,
    errors.SocketTimeoutError,
    errors.UnexpectedPacketFromServerError,
    EOFError,
    OSError,  # ConnectionError, socket.timeout, ...
    socket.timeout,
)
# In clickhouse-driver's NetworkError text when the TLS handshake refused the server's
# certificate: a configuration error (CA file, host name), not a passing outage.
_TLS_REFUSED: Final = "CERTIFICATE_VERIFY_FAILED"

INSERT_SETTINGS: Final[dict[str, Any]] = {
    # The confirmation must mean "stored": no server-side buffering of our inserts.
    "async_insert": 0,
    "insert_deduplicate": 1,
    # The materialized view on scans (scans_by_person_mv) deduplicates with the same tokens.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    # On a cluster, the Distributed table writes to the shards before answering.
    "distributed_foreground_insert": 1,
    # The server converts String to LowCardinality itself; the client then sends plain
    # strings instead of building dictionaries in Python (tables other than scans, which
    # go through input(): see sinks.batch.SCAN_WIRE).
    "low_cardinality_allow_in_native_format": 0,
    # No ReplacingMergeTree merge of each inserted block (scans, scans_by_person, premises,
    # dead_letters): it cost the server 2-3 us a row a table, about a third of its CPU an
    # inserted scan (14-17 against 9-13 us with merges, bench/RESULTS.md "Sink").
    # Duplicates inside a block then wait for a background merge like duplicates across
    # blocks always did: no reader counts rows (`tracing/sql.py`), `premises` is read with
    # FINAL and `dead_letters` with DISTINCT.
    "optimize_on_insert": 0,
}


class WriteError(Exception):
    """A failed write, classified. `cause` is the original exception."""

    def __init__(self, kind: ErrorKind, cause: BaseException, what: str = "") -> None:
        self.kind: ErrorKind = kind
        self.cause = cause
        super().__init__(f"{kind}{' ' + what if what else ''}: {type(cause).__name__}: {cause}")


class SinkFatal(RuntimeError):
    """ClickHouse refuses writes for a reason retrying cannot fix; nothing was committed."""


def classify(exc: BaseException) -> ErrorKind:
    """Transient, terminal or fatal (module docstring)."""
    if isinstance(exc, WriteError):
        return exc.kind
    if isinstance(exc, errors.ServerException):
        if exc.code in TERMINAL_CODES:
            return "terminal"
        if exc.code in FATAL_CODES:
            return "fatal"
        return "transient"
    if isinstance(exc, errors.NetworkError) and _TLS_REFUSED in str(exc):
        return "fatal"
    if isinstance(exc, _NETWORK_ERRORS):
        return "transient"
    if isinstance(exc, _DATA_ERRORS):
        return "terminal"
    return "transient"


class ScanWriter(Protocol):
    """Where the sink writes. Every method raises `WriteError` and nothing else."""

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        """Insert columnar `data` into `table`; a repeated `token` adds nothing."""

    def refresh_rollup(self, days: Sequence[date]) -> None:
        """Recompute the report rollups (`premises_daily`, the keyed sets) of these local
        days, and count the complete days and weeks (`report_counts`)."""

    def dirty_days(self) -> list[date]:
        """Local days whose scans changed after their rollup was computed."""

    def close(self) -> None: ...


class ClickHouseWriter:
    """`ScanWriter` over clickhouse-driver's native protocol (columnar inserts)."""

    def __init__(self, settings: ClickHouseSettings, *, timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            # Server-side parameters: the person hash key never enters a query's text.
            self._client = connect(
                self.settings, send_receive_timeout=self.timeout_s, server_side_params=True
            )
        return self._client

    def _connected(self) -> Client:
        """The client, connected. A failure here is never the data's fault: a terminal
        label would make the sink dead-letter good rows, so it becomes fatal."""
        try:
            client = self.client
            if not client.connection.connected:
                client.connection.connect()
        except Exception as exc:  # classified here, at the seam
            kind = classify(exc)
            raise WriteError("fatal" if kind == "terminal" else kind, exc, "connect") from exc
        return client

    def _run(self, what: str, query: str, data: Any = None, **kwargs: Any) -> Any:
        self._connected()
        try:
            if data is None:
                return self.client.execute(query, **kwargs)
            return self.client.execute(query, data, **kwargs)
        except Exception as exc:  # classified here, at the seam
            # clickhouse-driver disconnects after an error; the next call reconnects.
            raise WriteError(classify(exc), exc, what) from exc

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        self._run(
            f"insert into {table}",
            insert_sql(table, columns),
            data,
            columnar=True,
            settings={**INSERT_SETTINGS, "insert_deduplication_token": token},
        )

    def refresh_rollup(self, days: Sequence[date]) -> None:
        if not days:
            return
        try:
            key = self.settings.person_hash_key_pair()
        except ValueError as exc:  # no key: never sets of unkeyed hashes, and a loud stop
            raise WriteError("fatal", exc, "rollup refresh") from exc
        now = now_ms()
        # Background work over whole days: one thread, so that it never takes both
        # cores from the inserts behind it, and one set of hash tables, not one a thread.
        settings = {"async_insert": 0, "max_threads": 1}
        for what, (sql, params) in (
            ("rollup refresh", refresh_sql(days)),
            ("rollup sets", sets_sql(days, key)),
        ):
            self._run(what, sql, params=params, settings=settings)
        sql, params = uncounted_sql(local_day(now))
        uncounted: list[tuple[PeriodKind, date]] = [
            (r[0], r[1]) for r in self._run("rollup uncounted", sql, params=params)
        ]
        periods = counted_periods(days, uncounted, now, self.settings.retention_days)
        for kind in ("day", "week"):
            firsts = sorted(first for k, first in periods if k == kind)
            if firsts:
                sql, params = counts_sql(kind, firsts)
                self._run(f"rollup {kind} counts", sql, params=params, settings=settings)

    def dirty_days(self) -> list[date]:
        rows = self._run("rollup dirty days", dirty_days_sql())
        return [r[0] for r in rows]

    def ping(self) -> float:
        start = time.monotonic()
        self._run("ping", "SELECT 1")
        return time.monotonic() - start

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None
