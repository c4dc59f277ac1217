"""Builders shared by the processors tests (imported by module name: pytest's rootdir-less
`prepend` import mode puts this folder on sys.path; the name is unique in tests/)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import msgpack

from ingest.premises import Premises
from processors.core import ProcessorCore, Result
from processors.records import RawRecord
from processors.settings import ProcessorSettings
from processors.state import ProcessorState
from processors.tables import decode_value, encode_value

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20Z; fixed, tests never read the clock
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def wire(event_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid scan's wire map: person p1 at premises P1, checking in 10 minutes ago."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "person_id": "p1",
        "premises_id": "P1",
        "scanned_at": NOW - 10 * MINUTE,
        "kind": "checkin",
        "gateway_id": "gw-1",
        "schema": 1,
    }
    base.update(overrides)
    return base


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


class Feed:
    """Makes `RawRecord`s with increasing offsets on one topic partition."""

    def __init__(self, topic: str = "scans.raw", partition: int = 3) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = 100

    def raw(self, value: bytes | None) -> RawRecord:
        record = RawRecord(value, self.topic, self.partition, self.offset)
        self.offset += 1
        return record

    def scan(self, event_id: str, **overrides: Any) -> RawRecord:
        return self.raw(pack(wire(event_id, **overrides)))


def premises(
    premises_id: str = "P1",
    *,
    name: str = "Cho Phan Rang",
    category: str = "market",
    district: str = "Phan Rang-Thap Cham",
    ward: str = "Thanh Son",
    agency: str = "So Cong Thuong",
    version: int = 1,
) -> Premises:
    return Premises(
        premises_id=premises_id,
        name=name,
        category=category,
        district=district,
        ward=ward,
        agency=agency,
        address="1 Thong Nhat",
        lat=11.56,
        lon=108.99,
        version=version,
    )


def make_core(
    *known: Premises, state: ProcessorState | None = None, **settings: int
) -> ProcessorCore:
    core = ProcessorCore(ProcessorSettings(**settings), state)
    for p in known:
        core.upsert_premises(p, NOW - DAY)
    return core


def event_ids(result: Result) -> list[str]:
    return [row[0] for row in result.rows]


def assert_balanced(core: ProcessorCore, *results: Result) -> None:
    """The accounting identity, running and for each call."""
    c = core.counts
    assert c.received == c.enriched + c.duplicates + c.repeats + c.dead + c.parked, c
    assert c.balanced(), c
    assert c.parked == core.state.parked_count(), (c, core.state.parked)
    for result in results:
        assert result.counts.balanced(), result.counts
        assert result.counts.enriched == len(result.rows)
        assert result.counts.dead == len(result.dead_letters)


class SerializingTable(MutableMapping[str, Any]):
    """A stand-in for a Faust table with the worker's changelog value codec: values are
    stored as bytes, so a value mutated in place after `[key] = value` is lost, as in Faust,
    and reads return fresh lists."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def __getitem__(self, key: str) -> Any:
        return decode_value(self._data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        assert isinstance(key, str)
        self._data[key] = encode_value(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


def serializing_state() -> ProcessorState:
    return ProcessorState(
        parked=SerializingTable(),
        premises=SerializingTable(),
    )
