"""Pure batch building for the sink: Kafka records in, columnar inserts with tokens out.

No I/O here; `sinks.consume_loop` feeds it records and hands its `Chunk`s to a `ScanWriter`.

Batch boundaries and idempotency. Records are cut per topic partition, never across
partitions, into chunks of `batch_rows` rows counted from the first offset not yet
committed: a record of `scans.enriched` is a frame of many scans (`processors.records`;
its count is read from its first bytes) and a chunk ends with the record that reaches
`batch_rows`; any other record is one row. Each chunk is one INSERT carrying
`insert_deduplication_token = topic:partition:first-last`, and the partition's offset is
committed only after ClickHouse confirmed it. So:
- a batch retried in process (a timeout after the server stored it) has the same token and
  adds nothing;
- after a crash between insert and commit, the records are read again from the committed
  offset; while the partition has a backlog (the usual state right after a restart) the cut
  points are a function of the offsets (and the records' bytes) alone, so the same chunks,
  with the same tokens, are rebuilt and again add nothing;
- a partition that has caught up with its topic (fewer than `batch_rows` rows, estimated
  from the buffered records, from its first buffered offset to the end of the topic) is
  flushed by time (`batch_seconds`) with whatever it holds. A crash in that window
  replays a chunk whose boundaries may differ: its rows are stored twice until
  ReplacingMergeTree merges them, and no reader of `scans` counts rows (`tracing/sql.py`,
  `tracing/report/queries.py`), so a duplicate is never counted. Correctness does not
  rest on the tokens.

Decoding is the hot path: msgspec decodes each record, a frame or a lone scan map, into
typed structs in C and one `attrgetter` per column builds the columns (2.5 us a row
against 6.5 us for msgpack dicts, itemgetter and zip; bench/RESULTS.md). When any record
of a slice does not decode, the slice is decoded record by record, and a frame scan by
scan: each bad scan goes to the dead letters with its own bytes, the rest are stored.
"""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Final, Literal

import msgpack
import msgspec

from ingest.contract import ScanRejected, parse_timestamp
from ingest.deadletter import DeadLetter
from ingest.premises import CSV_COLUMNS, Premises
from processors.records import (
    ENRICHED_FIELDS,
    EnrichedWire,
    decode_wire_record,
    encode_wire,
    frame_rows,
)

Kind = Literal["scans", "premises", "dead_letters"]

# The scans table's columns in insert order: the enriched wire map minus `schema`.
SCAN_COLUMNS: Final = tuple(f for f in ENRICHED_FIELDS if f != "schema")
PREMISES_COLUMNS: Final = (*CSV_COLUMNS, "dwell_minutes", "version")
DEAD_LETTER_COLUMNS: Final = (
    "stage",
    "reason",
    "detail",
    "raw",
    "topic",
    "partition",
    "offset",
    "at",
    "event_id",
    # read from the raw bytes when they are a scan (`scan_fields`): the report's columns
    "premises_id",
    "gateway_id",
    "scanned_at",
)
COLUMNS: Final[dict[Kind, tuple[str, ...]]] = {
    "scans": SCAN_COLUMNS,
    "premises": PREMISES_COLUMNS,
    "dead_letters": DEAD_LETTER_COLUMNS,
}
SCANNED_AT: Final = SCAN_COLUMNS.index("scanned_at")
RECEIVED_AT: Final = SCAN_COLUMNS.index("received_at")
MAX_DETAIL: Final = 500

Row = tuple[Any, ...]
_unpackb: Final = msgpack.unpackb
_decode_scan: Final = msgspec.msgpack.Decoder(EnrichedWire).decode
_SCAN_GETTERS: Final = tuple(operator.attrgetter(c) for c in SCAN_COLUMNS)

# How scans travel to ClickHouse: times as Int64 epoch ms, `kind` as a string; the server
# converts them (DateTime64, Enum8) and builds the LowCardinality dictionaries, instead of
# clickhouse-driver's per-value Python loops. (name, wire type, expression)
_TIMES: Final = frozenset({"scanned_at", "received_at", "processed_at"})
SCAN_WIRE: Final = tuple(
    (
        c,
        "Nullable(Int64)"
        if c == "received_at"
        else "Int64"
        if c in _TIMES
        else "UInt16"
        if c == "dwell_minutes"
        else "String",
        f"fromUnixTimestamp64Milli({c}, 'UTC')" if c in _TIMES else c,
    )
    for c in SCAN_COLUMNS
)


def insert_sql(table: str, columns: Sequence[str]) -> str:
    """The INSERT statement of a columnar block for `table`."""
    names = ", ".join(columns)
    if table == "scans" and tuple(columns) == SCAN_COLUMNS:
        structure = ", ".join(f"{c} {t}" for c, t, _ in SCAN_WIRE)
        exprs = ", ".join(e for _, _, e in SCAN_WIRE)
        return (
            f"INSERT INTO `scans` ({names}) SELECT {exprs} "  # noqa: S608  # constants only
            f"FROM input('{structure}') FORMAT Native"
        )
    return f"INSERT INTO `{table}` ({names}) VALUES"


_dead_row: Final = operator.itemgetter(*DEAD_LETTER_COLUMNS[:-3])
_premises_fields: Final = frozenset(Premises.__dataclass_fields__)
_dead_letter_fields: Final = frozenset(DeadLetter.__dataclass_fields__)


def token(topic: str, partition: int, first: int, last: int) -> str:
    """The insert deduplication token of the records `first..last` of one partition."""
    return f"{topic}:{partition}:{first}-{last}"


@dataclass(frozen=True, slots=True)
class Slice:
    """Consecutive records of one partition, cut for one insert."""

    topic: str
    partition: int
    offsets: list[int]
    values: list[bytes | None]
    rows: int = -1  # the rows its records hold (frames hold many); -1: one per record
    # Cut by time (a tail), not at `batch_rows`: the number of the `Batcher.cut` call that
    # cut it (-1: a full slice). A tail's bounds depend on timing anyway, so the sink may
    # store the tails of one cut in one insert (`Sink.write`); a retry of that flush has
    # the same slices, so the same insert and token.
    tail_of: int = -1

    def __post_init__(self) -> None:
        if self.rows < 0:
            object.__setattr__(self, "rows", len(self.offsets))

    @property
    def first(self) -> int:
        return self.offsets[0]

    @property
    def last(self) -> int:
        return self.offsets[-1]

    @property
    def token(self) -> str:
        return token(self.topic, self.partition, self.first, self.last)


@dataclass(slots=True)
class Chunk:
    """One insert: `rows` for `table` with `token`, plus the records that failed to decode
    (already shaped as dead-letter rows) and those skipped on purpose (tombstones).

    `offsets[i]` and `values[i]` are the source record of row i, so a row ClickHouse
    rejects can be dead-lettered with its own bytes (`raw`); `values[i]` is None for a row
    of a frame, whose own bytes are encoded again when needed."""

    table: Kind
    token: str
    rows: list[Row]
    offsets: list[int]
    values: list[bytes | None]
    topic: str = ""
    partition: int = -1
    dead: list[Row] = field(default_factory=list)
    skipped: int = 0
    # The fast path's decoded scans, instead of `rows` (no per-row tuples to build).
    scans: list[msgspec.Struct] | None = None  # EnrichedWire instances

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.table]

    @property
    def size(self) -> int:
        """Rows to insert."""
        return len(self.offsets)

    def columnar(self) -> list[list[Any]]:
        """The rows as one list per column (what clickhouse-driver's columnar insert takes).
        Fresh lists on every call: clickhouse-driver rewrites them in place (NULL -> 0)."""
        if self.scans is not None:
            return [list(map(get, self.scans)) for get in _SCAN_GETTERS]
        if not self.rows:
            return [[] for _ in self.columns]
        return list(map(list, zip(*self.rows, strict=True)))

    def halves(self) -> tuple[Chunk, Chunk]:
        """Two chunks of the rows, for finding a rejected row by bisection; their tokens
        derive from this one, so a retried bisection is deduplicated too."""
        mid = self.size // 2
        return self._part(0, mid), self._part(mid, self.size)

    def _part(self, lo: int, hi: int) -> Chunk:
        return Chunk(
            self.table,
            f"{self.token}:{lo}-{hi}",
            self.rows[lo:hi],
            self.offsets[lo:hi],
            self.values[lo:hi],
            self.topic,
            self.partition,
            scans=None if self.scans is None else self.scans[lo:hi],
        )

    def raw(self, i: int) -> bytes | None:
        """Row i's own bytes: its record's, or for a row of a frame, the row encoded alone."""
        value = self.values[i]
        if value is None and self.scans is not None:
            return encode_wire(self.scans[i])
        return value

    def first_event_id(self) -> str:
        """The event id of the first row (scans only), for a refused row's dead letter."""
        if self.table != "scans" or not self.size:
            return ""
        first = _SCAN_GETTERS[0](self.scans[0]) if self.scans is not None else self.rows[0][0]
        return first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)


def dead_row(
    reason: str,
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    at_ms: int,
    detail: str = "",
    event_id: str = "",
) -> Row:
    """A `dead_letters` row written by the sink itself (stage `sink`)."""
    return (
        "sink",
        reason,
        detail[:MAX_DETAIL],
        raw or b"",
        topic,
        partition,
        offset,
        at_ms,
        event_id,
        *scan_fields(raw),
    )


# A scan's map is small; bigger bytes (a whole frame, a request body) are not looked into.
MAX_SCAN_BYTES: Final = 4096


def scan_fields(raw: bytes | None) -> tuple[str, str, int | None]:
    """(premises_id, gateway_id, scanned_at in epoch ms) of the scan in a dead letter's raw
    bytes, as far as they can be read; ("", "", None) when they are no scan map. Only
    these leave the raw bytes: the person id never does."""
    if not raw or len(raw) > MAX_SCAN_BYTES:
        return "", "", None
    try:
        obj = _unpackb(raw)
    except Exception:  # msgpack raises a family of unrelated types on bad input
        return "", "", None
    if not isinstance(obj, dict):
        return "", "", None

    def text(name: str) -> str:
        value = obj.get(name)
        return value[:64] if isinstance(value, str) and value.isprintable() else ""

    try:
        at: int | None = parse_timestamp(obj.get("scanned_at"), "scanned_at")
    except ScanRejected:
        at = None
    return text("premises_id"), text("gateway_id"), at


def _event_id(value: bytes | None) -> str:
    """The event id of a record that failed, when it can be read at all."""
    try:
        obj = _unpackb(value) if value is not None else None
    except Exception:  # msgpack raises a family of unrelated types on bad input
        return ""
    if isinstance(obj, dict):
        eid = obj.get("event_id")
        if isinstance(eid, str):
            return eid[:64]
    return ""


class Undecodable(ValueError):
    """The bytes are not msgpack (or there are none)."""


def _map(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise Undecodable("empty record (tombstone)")
    try:
        obj = _unpackb(value)
    except Exception as exc:  # msgpack raises a family of unrelated types on bad input
        raise Undecodable(f"msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a map: {type(obj).__name__}")
    return obj


def _scan(value: bytes | None) -> Row:
    obj = _map(value)  # the checks and their messages
    missing = [c for c in SCAN_COLUMNS if c not in obj]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    try:
        scan = _decode_scan(value)  # type: ignore[arg-type]  # not None: _map checked
    except msgspec.ValidationError as exc:  # e.g. "Expected `int`, got `str` - at `$.kind`"
        raise ValueError(str(exc)) from None
    return tuple(get(scan) for get in _SCAN_GETTERS)


def _checked(obj: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    unknown = sorted(str(k) for k in obj if k not in known)
    if unknown:
        raise ValueError(f"unknown fields {', '.join(unknown)}")
    return obj


def _premises(value: bytes | None) -> Row | None:
    if value is None:
        return None  # a tombstone of the compacted registry topic: nothing to store
    try:
        p = Premises(**_checked(_map(value), _premises_fields))
    except TypeError as exc:  # a missing field
        raise ValueError(str(exc)) from None
    return tuple(getattr(p, column) for column in PREMISES_COLUMNS)


def _slow_scans(s: Slice, now_ms: int, chunk: Chunk) -> None:
    """Record by record, and within a frame scan by scan, so one bad scan costs only itself
    (dead-lettered with its own bytes and its frame's offset)."""
    items: list[tuple[int, bytes | None]] = []
    for offset, value in zip(s.offsets, s.values, strict=True):
        parts = _frame_parts(value) if value else []
        # a lone scan, or bytes `_scan` refuses with the reason (an empty frame too)
        items += [(offset, part) for part in parts] if parts else [(offset, value)]
    _slow(_scan, s, items, now_ms, chunk)


def _frame_parts(value: bytes) -> list[bytes]:
    """A frame's elements as their own bytes, cut without decoding them (a scan with bad
    UTF-8 or a bad key then costs only itself); a truncated frame ends with its broken rest.
    Empty when `value` does not start as an array."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(value)
    try:
        n = unpacker.read_array_header()
    except Exception:  # not an array at all: one item
        return []
    parts: list[bytes] = []
    start = unpacker.tell()
    for _ in range(n):
        try:
            unpacker.skip()
        except Exception:  # truncated or malformed from here on: the rest is one bad item
            parts.append(value[start:])
            return parts
        end = unpacker.tell()
        parts.append(value[start:end])
        start = end
    if start < len(value):  # bytes after the last element
        parts.append(value[start:])
    return parts


def _dead_letter(value: bytes | None) -> Row:
    try:
        dl = DeadLetter(**_checked(_map(value), _dead_letter_fields))
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return (*_dead_row(dl.to_wire()), *scan_fields(dl.raw))


def _slow(
    decode: Callable[[bytes | None], Row | None],
    s: Slice,
    items: Iterable[tuple[int, bytes | None]],
    now_ms: int,
    chunk: Chunk,
) -> None:
    """Item by item (offset, bytes) of slice `s`, so one bad item costs only itself."""
    for offset, value in items:
        try:
            row = decode(value)
        except Exception as exc:  # any failure of one record makes it a dead letter
            reason = "undecodable" if isinstance(exc, Undecodable) else "invalid"
            chunk.dead.append(
                dead_row(
                    reason, value, s.topic, s.partition, offset, now_ms, str(exc), _event_id(value)
                )
            )
            continue
        if row is None:
            chunk.skipped += 1
            continue
        chunk.rows.append(row)
        chunk.offsets.append(offset)
        chunk.values.append(value)


def build_chunk(kind: Kind, s: Slice, now_ms: int) -> Chunk:
    """Decode one slice into one insert for `kind`'s table (see the module docstring)."""
    if kind == "scans":
        decoded: list[Any] | None
        try:
            # The fast path: every record a frame (or a lone map) of well-typed scans.
            decoded = list(map(decode_wire_record, s.values))  # type: ignore[arg-type]  # None raises
        except Exception:  # some record is bad: sort them out one by one
            decoded = None
        if decoded is not None and any(type(d) is list and not d for d in decoded):
            decoded = None  # an empty frame: the slow path makes it a dead letter
        if decoded is not None:
            if not any(type(d) is list for d in decoded):  # lone maps only
                return Chunk(
                    kind, s.token, [], s.offsets, s.values, s.topic, s.partition, scans=decoded
                )
            scans: list[msgspec.Struct] = []
            offsets: list[int] = []
            values: list[bytes | None] = []
            for offset, value, d in zip(s.offsets, s.values, decoded, strict=True):
                if type(d) is list:
                    scans += d
                    offsets += [offset] * len(d)
                    values += [None] * len(d)
                else:
                    scans.append(d)
                    offsets.append(offset)
                    values.append(value)
            return Chunk(kind, s.token, [], offsets, values, s.topic, s.partition, scans=scans)
        chunk = Chunk(kind, s.token, [], [], [], s.topic, s.partition)
        _slow_scans(s, now_ms, chunk)
        return chunk
    chunk = Chunk(kind, s.token, [], [], [], s.topic, s.partition)
    decode: Callable[[bytes | None], Row | None]
    decode = {"premises": _premises, "dead_letters": _dead_letter}[kind]
    _slow(decode, s, zip(s.offsets, s.values, strict=True), now_ms, chunk)
    return chunk


class Batcher:
    """Buffers records per partition and cuts them into `Slice`s (module docstring).

    A partition is cut into slices of `batch_rows` rows as soon as it holds that many (a
    record of a `framed` topic holds `frame_rows` rows: a slice ends with the record that
    reaches `batch_rows`; elsewhere a record is a row). What is left is flushed when its
    oldest record has waited `batch_seconds` and the partition has caught up with its topic
    (`caught_up`), or when it has waited `max_wait_factor * batch_seconds` whatever the
    backlog."""

    def __init__(
        self,
        batch_rows: int,
        batch_seconds: float,
        max_wait_factor: float = 5.0,
        framed: frozenset[str] = frozenset(),
    ):
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.max_wait = batch_seconds * max_wait_factor
        self.framed = framed
        self._offsets: dict[tuple[str, int], list[int]] = {}
        self._values: dict[tuple[str, int], list[bytes | None]] = {}
        self._times: dict[tuple[str, int], list[float]] = {}
        self._rows: dict[tuple[str, int], list[int]] = {}  # rows per record
        self._cuts = 0

    def add(
        self,
        topic: str,
        partition: int,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        now: float,
    ) -> None:
        tp = (topic, partition)
        if tp not in self._offsets:
            self._offsets[tp], self._values[tp], self._times[tp], self._rows[tp] = [], [], [], []
        self._offsets[tp].extend(offsets)
        self._values[tp].extend(values)
        self._times[tp].extend([now] * len(offsets))
        self._rows[tp].extend(
            map(frame_rows, values) if topic in self.framed else [1] * len(offsets)
        )

    def pending(self) -> int:
        """Rows buffered."""
        return sum(sum(r) for r in self._rows.values())

    def rows_per_record(self, topic: str, partition: int) -> float:
        """The mean rows of the partition's buffered records (1 when none are buffered)."""
        rows = self._rows.get((topic, partition))
        return sum(rows) / len(rows) if rows else 1.0

    def first_offset(self, topic: str, partition: int) -> int | None:
        offsets = self._offsets.get((topic, partition))
        return offsets[0] if offsets else None

    def cut(
        self,
        now: float,
        caught_up: Callable[[str, int], bool] = lambda _t, _p: True,
        *,
        everything: bool = False,
    ) -> list[Slice]:
        """Remove and return what is due now (with `everything`: all that is buffered)."""
        self._cuts += 1
        out: list[Slice] = []
        n = self.batch_rows
        for tp, offsets in self._offsets.items():
            values, times, rows = self._values[tp], self._times[tp], self._rows[tp]
            # rows up to and including each record
            ends: Sequence[int] = (
                list(accumulate(rows)) if tp[0] in self.framed else range(1, len(rows) + 1)
            )
            start = done = 0  # first record and rows before it
            while ends and ends[-1] - done >= n:
                stop = bisect_left(ends, done + n, lo=start) + 1
                out.append(
                    Slice(
                        tp[0], tp[1], offsets[start:stop], values[start:stop], ends[stop - 1] - done
                    )
                )
                start, done = stop, ends[stop - 1]
            if start < len(offsets):
                age = now - times[start]
                if (
                    everything
                    or age >= self.max_wait
                    or (age >= self.batch_seconds and caught_up(tp[0], tp[1]))
                ):
                    out.append(
                        Slice(
                            tp[0],
                            tp[1],
                            offsets[start:],
                            values[start:],
                            ends[-1] - done,
                            self._cuts,
                        )
                    )
                    start = len(offsets)
            if start:
                del offsets[:start], values[:start], times[:start], rows[:start]
        return out

    def drop(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Forget what is buffered for partitions this consumer no longer owns."""
        for tp in partitions:
            self._offsets.pop(tp, None)
            self._values.pop(tp, None)
            self._times.pop(tp, None)
            self._rows.pop(tp, None)
