"""The core's state: four string-keyed mappings with msgpack-able values.

Each is a plain `dict` in tests, the demo and the benchmark, and a Faust table
(changelogged, keyed and partitioned like `scans.raw`, i.e. by premises) in the worker.
The core only uses `get`, `[key] = value`, `del`, `pop`, `in`, `keys()`, `items()` and
`len()`, and it never mutates a value in place: a Faust table notices assignments only, so
every change is a fresh value assigned to its key.

Value formats (msgpack-able: ints, strings, bytes, lists):

- `seen`: event_id -> arrival ms of its first sighting.
- `last_kept`: `repeat_key(person, premises, kind)` -> `last_kept_value(scanned_at,
  arrival_ms)` of the last scan kept for that key: both times packed in one int (36 bytes
  where a tuple of two ints took 88; this state is held for every scan of the horizon).
  Wider than 64 bits: the changelog carries it as 16 bytes (`processors.tables`).
- `parked`: premises_id -> list of `ParkedScan.to_list()` entries, oldest first.
- `premises`: premises_id -> `premises_entry(p)`:
  `[name, category, district, ward, agency, dwell_minutes, version]`.

All four are keyed by something that contains the premises id or travels with it
(event_id: a duplicate carries the same premises and lands on the same partition of
`scans.raw`, which is keyed by premises_id), so a worker's state for one source partition
is exactly what that partition needs.

For the Faust app: a table write goes to the changelog partition of the event being
processed (unless `use_partitioner=True`), so call the core with the records of one source
partition at a time (group a `take()` batch by partition) and run `expire` from within that
partition's processing, or give each assigned partition its own `ProcessorState`. Every
lookup checks its own horizon, so a stale `seen` or `last_kept` entry brought back by a
changelog replay changes no result; `parked` entries are not so forgiving. The premises
registry may be a global table filled behind the core's back: `expire` then releases the
scans parked for premises that have arrived.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

from ingest.premises import Premises

KEY_SEP: Final = "\x1f"  # ids are printable (contract), so the separator never occurs in one

# Indexes into a premises entry.
P_NAME, P_CATEGORY, P_DISTRICT, P_WARD, P_AGENCY, P_DWELL, P_VERSION = range(7)

# Indexes into a parked entry (`ParkedScan.to_list()`).
PK_PARKED_AT, PK_EVENT_ID = 4, 6

SeenTable = MutableMapping[str, int]
LastKeptTable = MutableMapping[str, int]
ParkedTable = MutableMapping[str, list[list[Any]]]
PremisesTable = MutableMapping[str, list[Any]]


# Epoch ms up to 2109 fit in 42 bits (the contract stops at 2100).
ARRIVAL_BITS: Final = 42
ARRIVAL_MASK: Final = (1 << ARRIVAL_BITS) - 1


def last_kept_value(scanned_at: int, arrival: int) -> int:
    """`scanned_at` in the high bits, `arrival` in the low 42 (both epoch ms)."""
    return scanned_at << ARRIVAL_BITS | arrival


def repeat_key(person_id: str, premises_id: str, kind: str) -> str:
    return f"{person_id}\x1f{premises_id}\x1f{kind}"  # KEY_SEP; an f-string is one allocation


def premises_entry(p: Premises) -> list[Any]:
    """What enrichment needs of a premises, in the `premises` table's value format."""
    return [p.name, p.category, p.district, p.ward, p.agency, p.dwell_minutes, p.version]


@dataclass(frozen=True, slots=True)
class ParkedScan:
    """A valid, deduplicated scan waiting for its premises, with what a dead letter needs."""

    raw: bytes
    topic: str
    partition: int
    offset: int
    parked_at: int  # processing time when it was parked; the park timeout runs from here
    arrival: int  # received_at, else processing time: the dedup and repeat clock
    event_id: str
    person_id: str
    premises_id: str
    scanned_at: int
    kind: str
    gateway_id: str
    received_at: int | None

    def to_list(self) -> list[Any]:
        """The `parked` table's entry format (the premises id is the key, not stored)."""
        return [
            self.raw,
            self.topic,
            self.partition,
            self.offset,
            self.parked_at,
            self.arrival,
            self.event_id,
            self.person_id,
            self.scanned_at,
            self.kind,
            self.gateway_id,
            self.received_at,
        ]

    @classmethod
    def from_list(cls, premises_id: str, entry: list[Any]) -> ParkedScan:
        (
            raw,
            topic,
            partition,
            offset,
            parked_at,
            arrival,
            event_id,
            person_id,
            scanned_at,
            kind,
            gateway_id,
            received_at,
        ) = entry
        return cls(
            raw=bytes(raw),
            topic=topic,
            partition=partition,
            offset=offset,
            parked_at=parked_at,
            arrival=arrival,
            event_id=event_id,
            person_id=person_id,
            premises_id=premises_id,
            scanned_at=scanned_at,
            kind=kind,
            gateway_id=gateway_id,
            received_at=received_at,
        )


@dataclass(slots=True)
class ProcessorState:
    """The four mappings the core reads and writes; pass Faust tables to persist them."""

    seen: SeenTable = field(default_factory=dict)
    last_kept: LastKeptTable = field(default_factory=dict)
    parked: ParkedTable = field(default_factory=dict)
    premises: PremisesTable = field(default_factory=dict)

    def parked_count(self) -> int:
        """Scans currently parked (a full pass over `parked`: for gauges, not per event)."""
        return sum(len(entries) for entries in self.parked.values())
