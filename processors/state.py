"""The core's state: the premises registry and parked scans in string-keyed mappings,
dedup and repeat memory in `HorizonMap`s (`processors.horizon`: key hashes in arrays).

`premises` and `parked` are plain dicts in tests, the demo and the benchmark, and partitions
of Faust tables (changelogged, keyed and partitioned like `scans.raw`, i.e. by premises) in
the worker. The core uses `get`, `[key] = value`, `del`, `pop`, `in`, `keys()`, `items()`
and `len()` of them, and never mutates a value in place: a Faust table notices assignments
only, so every change is a fresh value assigned to its key. Their values (msgpack-able):

- `parked`: premises_id -> list of `ParkedScan.to_list()` entries, oldest first.
- `premises`: premises_id -> `premises_entry(p)`:
  `[name, category, district, ward, agency, dwell_minutes, version]`.

The two horizon maps, read and written a batch at a time:

- `seen`: hash of the event_id -> [arrival ms of its first sighting].
- `last_kept`: hash of `repeat_key(person, premises, kind)` -> [arrival ms, scanned_at] of
  the last scan kept for that key.

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
from processors.horizon import DELETED, HorizonMap

# The index of the version in a premises entry (`premises_entry`).
P_VERSION: Final = 6

# Indexes into a parked entry (`ParkedScan.to_list()`).
PK_PARKED_AT, PK_EVENT_ID = 4, 6

ParkedTable = MutableMapping[str, list[list[Any]]]
PremisesTable = MutableMapping[str, list[Any]]

# Columns of the horizon maps' values (column 0 is a `HorizonMap`'s clock).
SEEN_WIDTH: Final = 1
LK_ARRIVAL, LK_SCANNED_AT = 0, 1
LAST_KEPT_WIDTH: Final = 2
# What a lookup gives for a key not held: so far back that no comparison with it holds.
NEVER: Final = DELETED


def repeat_key(person_id: str, premises_id: str, kind: str) -> str:
    # Ids are printable (contract), so the separator never occurs in one; an f-string is
    # one allocation.
    return f"{person_id}\x1f{premises_id}\x1f{kind}"


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
    """What the core reads and writes; the worker passes partitions of Faust tables."""

    seen: HorizonMap = field(default_factory=lambda: HorizonMap(SEEN_WIDTH))
    last_kept: HorizonMap = field(default_factory=lambda: HorizonMap(LAST_KEPT_WIDTH))
    parked: ParkedTable = field(default_factory=dict)
    premises: PremisesTable = field(default_factory=dict)

    def parked_count(self) -> int:
        """Scans currently parked (a full pass over `parked`: for gauges, not per event)."""
        return sum(len(entries) for entries in self.parked.values())
