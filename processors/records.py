"""The records the processors stage reads and writes.

- `RawRecord`: one Kafka record of `scans.raw` as the core sees it (bytes plus where they
  came from, so a dead letter can point back at them). Anything with the same four
  attributes will do (`RawRecordLike`), e.g. a Faust `Message`, so the app need not copy.
- `EnrichedScan`: a valid, deduplicated scan joined with its premises (its wire form a
  msgpack map) that the ClickHouse sink consumes from `scans.enriched`.

`scans.enriched` carries *frames*: one Kafka record holds up to `FRAME_MAX_ROWS` enriched
scans of one batch of one partition, as a msgpack array of their maps (`encode_frames`).
Both ends pay per Kafka record, not per scan: the producer's and the sink's client code,
the broker's record handling. With one record per scan the sink spent 16-17 us of CPU a
row, with frames 8.6-11.3 (bench/RESULTS.md, "Sink"). A frame goes to the
partition of the `scans.raw` records it came from, which is the partition of every one of
its scans' `premises_id` (the topics are co-partitioned); it has no key. Readers take a
lone map too (one scan per record, what earlier workers wrote): `frame_rows`,
`decode_frame`.

On the hot path the core builds plain tuples in `ENRICHED_FIELDS` order (`EnrichedRow`);
a frozen dataclass costs several microseconds per instance to build, more than the rest of
the pipeline together, so `EnrichedScan` objects are built only when someone asks for them
(`Result.enriched`) and `encode_row` goes from the tuple to the wire bytes directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, get_type_hints

import msgpack
import msgspec

from ingest.contract import KINDS, SCHEMA_VERSION, Kind, ScanEvent

ENRICHED_FIELDS: Final = (
    "event_id",
    "person_id",
    "premises_id",
    "scanned_at",
    "kind",
    "gateway_id",
    "received_at",
    "schema",
    "premises_name",
    "category",
    "district",
    "ward",
    "agency",
    "dwell_minutes",
    "processed_at",
)

# One enriched scan as a tuple in ENRICHED_FIELDS order (what the core produces).
EnrichedRow = tuple[
    str, str, str, int, str, str, int | None, int, str, str, str, str, str, int, int
]


class ScanFields(Protocol):
    """The scan fields of an enriched row: a decoded scan, or a parked one."""

    @property
    def event_id(self) -> str: ...
    @property
    def person_id(self) -> str: ...
    @property
    def premises_id(self) -> str: ...
    @property
    def scanned_at(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def gateway_id(self) -> str: ...
    @property
    def received_at(self) -> int | None: ...


def enriched_row(scan: ScanFields, premises: Sequence[Any], now_ms: int) -> EnrichedRow:
    """`scan` enriched with a premises entry (`processors.state.premises_entry`: name,
    category, district, ward, agency, dwell minutes, ...) at `now_ms`."""
    return (
        scan.event_id,
        scan.person_id,
        scan.premises_id,
        scan.scanned_at,
        scan.kind,
        scan.gateway_id,
        scan.received_at,
        SCHEMA_VERSION,
        premises[0],
        premises[1],
        premises[2],
        premises[3],
        premises[4],
        premises[5],
        now_ms,
    )


_STR_FIELDS: Final = frozenset(
    {
        "event_id",
        "person_id",
        "premises_id",
        "gateway_id",
        "premises_name",
        "category",
        "district",
        "ward",
        "agency",
    }
)
_INT_FIELDS: Final = frozenset({"scanned_at", "schema", "dwell_minutes", "processed_at"})


class RawRecordLike(Protocol):
    """What the core needs of an input record; `faust.types.Message` has these too."""

    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record of `scans.raw`. `value` None (a tombstone) is dead-lettered as undecodable."""

    value: bytes | None
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(frozen=True, slots=True)
class EnrichedScan:
    """A kept scan with its premises' metadata at the time it was processed.

    The first eight fields are `ScanEvent`'s; `dwell_minutes` is the category's default
    visit length (`ingest.premises.DWELL_MINUTES`); `processed_at` is the worker's clock
    (epoch ms) when the scan was enriched, which for a parked scan is its release time.
    """

    event_id: str
    person_id: str
    premises_id: str
    scanned_at: int
    kind: Kind
    gateway_id: str
    received_at: int | None
    schema: int
    premises_name: str
    category: str
    district: str
    ward: str
    agency: str
    dwell_minutes: int
    processed_at: int

    @classmethod
    def from_row(cls, row: EnrichedRow) -> EnrichedScan:
        return cls(*row)  # type: ignore[arg-type]  # kind is checked where rows are built

    def to_row(self) -> EnrichedRow:
        return (
            self.event_id,
            self.person_id,
            self.premises_id,
            self.scanned_at,
            self.kind,
            self.gateway_id,
            self.received_at,
            self.schema,
            self.premises_name,
            self.category,
            self.district,
            self.ward,
            self.agency,
            self.dwell_minutes,
            self.processed_at,
        )

    @property
    def scan(self) -> ScanEvent:
        """The scan event without its enrichment."""
        return ScanEvent(
            event_id=self.event_id,
            person_id=self.person_id,
            premises_id=self.premises_id,
            scanned_at=self.scanned_at,
            kind=self.kind,
            gateway_id=self.gateway_id,
            received_at=self.received_at,
            schema=self.schema,
        )

    def to_wire(self) -> dict[str, object]:
        """The wire map (field name to value), the msgpack value on `scans.enriched`."""
        return dict(zip(ENRICHED_FIELDS, self.to_row(), strict=True))

    @classmethod
    def from_wire(cls, obj: object) -> EnrichedScan:
        """Check and build from a decoded wire map; `ValueError` names the bad field."""
        if not isinstance(obj, dict):
            raise ValueError(f"enriched scan is not a map: {type(obj).__name__}")
        missing = [f for f in ENRICHED_FIELDS if f not in obj]
        if missing:
            raise ValueError(f"enriched scan lacks {', '.join(missing)}")
        extra = sorted(str(k) for k in obj if k not in ENRICHED_FIELDS)
        if extra:
            raise ValueError(f"enriched scan has unknown fields {', '.join(extra)}")
        for name in ENRICHED_FIELDS:
            value = obj[name]
            if name in _STR_FIELDS:
                ok = isinstance(value, str)
            elif name in _INT_FIELDS:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif name == "received_at":
                ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
            else:  # kind
                ok = isinstance(value, str) and value in KINDS
            if not ok:
                raise ValueError(f"enriched scan field {name} has a bad value: {value!r:.80}")
        if obj["schema"] != SCHEMA_VERSION:
            raise ValueError(f"enriched scan schema {obj['schema']} (supported: {SCHEMA_VERSION})")
        return cls(**obj)

    def encode(self) -> bytes:
        return encode_row(self.to_row())

    @classmethod
    def decode(cls, data: bytes) -> EnrichedScan:
        """Bytes from `scans.enriched` to an `EnrichedScan`, or `ValueError`."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
        except Exception as exc:  # msgpack raises a family of unrelated types on bad input
            raise ValueError(f"enriched scan is not msgpack: {type(exc).__name__}") from None
        return cls.from_wire(obj)


# The wire map's shape for msgspec, made from `EnrichedScan`'s own fields and types: the
# worker encodes rows through it (built and encoded in C, 2.4x faster than packing a dict),
# the sink decodes into it (types checked in C; unknown fields ignored, for later versions).
EnrichedWire: Final[type[msgspec.Struct]] = msgspec.defstruct(
    "EnrichedWire", list(get_type_hints(EnrichedScan).items()), gc=False, module=__name__
)
assert EnrichedWire.__struct_fields__ == ENRICHED_FIELDS
encode_wire: Final = msgspec.msgpack.Encoder().encode
"""msgpack of an `EnrichedWire` (its wire map), or of a list of them (a frame)."""


def encode_row(row: EnrichedRow) -> bytes:
    """An enriched row straight to its msgpack wire map, without building an `EnrichedScan`."""
    return encode_wire(EnrichedWire(*row))


# A frame of this many scans is about 250 KB, a quarter of Kafka's default record limit.
FRAME_MAX_ROWS: Final = 1000
decode_wire_record: Final = msgspec.msgpack.Decoder(list[EnrichedWire] | EnrichedWire).decode  # type: ignore[valid-type]
"""A `scans.enriched` record to a list of `EnrichedWire` (a frame) or one (a lone map),
types checked in C; `msgspec.DecodeError` or `msgspec.ValidationError` if any scan is bad."""


def encode_frames(rows: Sequence[EnrichedRow], max_bytes: int) -> list[bytes]:
    """The rows as frames of at most `FRAME_MAX_ROWS` rows and `max_bytes` bytes each (a
    frame over the byte limit is halved until it fits or holds one row)."""
    frames: list[bytes] = []
    pending = [rows[i : i + FRAME_MAX_ROWS] for i in range(0, len(rows), FRAME_MAX_ROWS)]
    pending.reverse()
    while pending:
        part = pending.pop()
        frame = encode_wire([EnrichedWire(*row) for row in part])
        if len(frame) > max_bytes and len(part) > 1:
            half = len(part) // 2
            pending += (part[half:], part[:half])
            continue
        frames.append(frame)
    return frames


def frame_rows(value: bytes | None) -> int:
    """How many scans a `scans.enriched` record holds, from its first bytes (a msgpack array
    header), without decoding it; 1 for anything that is not an array (a lone scan, or bytes
    that will turn out bad and become one dead letter)."""
    if not value:
        return 1
    head = value[0]
    if 0x90 <= head <= 0x9F:
        n = head & 0x0F
    elif head == 0xDC and len(value) >= 3:
        n = int.from_bytes(value[1:3], "big")
    elif head == 0xDD and len(value) >= 5:
        n = int.from_bytes(value[1:5], "big")
    else:
        return 1
    return max(n, 1)


def decode_frame(data: bytes) -> list[EnrichedScan]:
    """A `scans.enriched` record (a frame or a lone map) to `EnrichedScan`s, or `ValueError`
    naming what is wrong."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=0)
    except Exception as exc:  # msgpack raises a family of unrelated types on bad input
        raise ValueError(f"enriched record is not msgpack: {type(exc).__name__}") from None
    return [EnrichedScan.from_wire(o) for o in (obj if isinstance(obj, list) else [obj])]


def encode_enriched(scan: EnrichedScan) -> bytes:
    return scan.encode()


def decode_enriched(data: bytes) -> EnrichedScan:
    """One lone scan map; a record of `scans.enriched` is read with `decode_frame`."""
    return EnrichedScan.decode(data)
