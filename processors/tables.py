"""The worker's state in Faust tables, one plain dict per partition.

The core's four mappings (`processors.state`) live in four Faust tables with compacted
changelogs, co-partitioned with `scans.raw`, so a restarted or rebalanced worker gets the
same state back from Kafka. Two things of Faust's own table API do not fit a batch worker:

- A Faust `Table` write goes to the changelog partition of `current_event()`: there is no
  current event in a batch (it mixes partitions) nor in a timer. Here every write names its
  partition explicitly.
- The core iterates its mappings (`expire` walks `seen`, `last_kept` and `parked`): over a
  table that holds every assigned partition it would expire, release and re-key another
  partition's entries into the wrong changelog partition and output partition. Here each
  partition is its own dict, and the core sees only one.

So the tables use `PartitionedStore` (an in-memory Faust store that keeps one dict per
partition, filled by Faust's changelog recovery) and the worker hands the core a
`PartitionView` of one partition per call. The view records what changed (`commit()`
returns it, for the changelog) and what it replaced (`rollback()` undoes a failed call).

Changelog records of `parked` and `premises` (compacted topics): key the UTF-8 key, value
the msgpack of the value, `None` (a tombstone) for a deleted key, which compaction then
drops. Values come back from msgpack as lists where the core wrote tuples; the core reads
both alike (`processors.state`).

`seen` and `last_kept` (`HorizonTable`) are different: each partition is a `HorizonMap`
(`processors.horizon`: key hashes and values in an int64 array), every scan adds an entry
to each, and an entry only matters for the dedup horizon. Their changelogs carry one record
per batch (`horizon_records`): key `BATCH_KEY_PREFIX` + random bytes (unique, so that
compaction could never drop one), value `HORIZON_MAGIC`, the row width, then the batch's
rows (the key hash's two halves and the values, little-endian int64), at most
`max_record_bytes` a record. A record per entry had made two changelog messages per scan
besides the enriched one (about 17 us of CPU a scan for the broker and the worker in
`python -m bench e2e`; bench/RESULTS.md). Their topics forget by time instead of by key
(cleanup.policy=delete, retention `HORIZON_RETENTION` dedup horizons): an entry older than
the horizon changes no answer, so a restart that reads it back only lets it go again.
Recovery applies a batch record's rows in order; the records of an older worker (msgpack
maps of string keys, or one record per key) are still read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Final

import msgpack
import numpy as np
from faust.stores.memory import Store as MemoryStore
from faust.tables.table import Table
from faust.types import TP, EventT

from processors.horizon import HorizonMap, Keys, Values, hash_keys

# A changelog message: (key, value); value None deletes the key.
ChangelogRecord = tuple[bytes, bytes | None]

# Batch records of a horizon table's changelog: no state key starts with this byte (ids are
# printable, `ingest.contract`).
BATCH_KEY_PREFIX: Final = b"\x00"
# A horizon table's changelog keeps this many dedup horizons of records, in segments of
# 1 / HORIZON_SEGMENTS of a horizon (Kafka deletes whole segments only).
HORIZON_RETENTION: Final = 2
HORIZON_SEGMENTS: Final = 8

_MISSING: Final[Any] = object()


# An older worker wrote `last_kept`'s packed times (wider than 64 bits) as this msgpack
# extension type: 16 bytes, big-endian, signed. Read for its changelog records only.
BIG_INT_EXT: Final = 1


def _ext(code: int, data: bytes) -> Any:
    if code == BIG_INT_EXT:
        return int.from_bytes(data, "big", signed=True)
    return msgpack.ExtType(code, data)


def _packer() -> Any:
    """The changelog's msgpack encoder (a `Packer` is cheaper than `packb` per value)."""
    return msgpack.Packer(use_bin_type=True).pack


def encode_value(value: Any) -> bytes:
    return _packer()(value)  # type: ignore[no-any-return]


def decode_value(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext)


class PartitionView(MutableMapping[str, Any]):
    """One partition of a table as the core's mapping, recording changes and undo data.

    `commit()` hands over the changes since the last commit or rollback (key -> new value,
    None for deleted) and forgets the undo data; `rollback()` restores the dict as it was
    at that point. Values are never None (the core stores ints, tuples and lists).
    Reads are the dict's own bound methods (the core calls them per scan).
    """

    __slots__ = ("_data", "_dirty", "_undo", "get", "items", "keys")

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self._dirty: dict[str, Any] = {}
        self._undo: dict[str, Any] = {}
        self.get = data.get  # type: ignore[method-assign]  # the dict's own
        self.keys = data.keys  # type: ignore[method-assign]
        self.items = data.items  # type: ignore[method-assign]

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, key: str, value: Any) -> None:
        data = self._data
        self._undo.setdefault(key, data.get(key, _MISSING))
        data[key] = value
        self._dirty[key] = value

    def __delitem__(self, key: str) -> None:
        old = self._data.pop(key)  # KeyError like a dict
        self._undo.setdefault(key, old)
        self._dirty[key] = None

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            value = self._data[key]
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    # -- transactions ----------------------------------------------------------------------

    def commit(self) -> dict[str, Any]:
        changes = self._dirty
        self._dirty = {}
        self._undo = {}
        return changes

    def rollback(self) -> None:
        data = self._data
        for key, old in self._undo.items():
            if old is _MISSING:
                data.pop(key, None)
            else:
                data[key] = old
        self._dirty = {}
        self._undo = {}


def changelog_records(changes: dict[str, Any]) -> list[ChangelogRecord]:
    """The changelog messages for what `PartitionView.commit()` returned."""
    pack = _packer()
    return [(k.encode(), pack(v) if v is not None else None) for k, v in changes.items()]


HORIZON_MAGIC: Final = b"HZ1"  # not the start of a msgpack map: older records are maps
_ROW: Final = np.dtype("<i8")


def horizon_records(keys: Keys, values: Values, max_bytes: int) -> list[ChangelogRecord]:
    """A horizon map's committed changes as batch records (see the module docstring)."""
    rows = np.concatenate((keys, values), axis=1).astype(_ROW, copy=False)
    width = rows.shape[1]
    per_record = max(1, (max_bytes - len(HORIZON_MAGIC) - 1) // (8 * width))
    header = HORIZON_MAGIC + bytes([width])
    return [
        (BATCH_KEY_PREFIX + os.urandom(12), header + rows[start : start + per_record].tobytes())
        for start in range(0, len(rows), per_record)
    ]


def _legacy_value(entry: Any, width: int) -> list[int] | None:
    """An older worker's value: `seen` an arrival int, `last_kept` scanned_at and arrival
    packed in one int (or its 16 bytes)."""
    if type(entry) is bytes:
        entry = int.from_bytes(entry, "big", signed=True)
    if type(entry) is not int:
        return None
    if width == 1:
        return [entry]
    return [entry & ((1 << _LEGACY_ARRIVAL_BITS) - 1), entry >> _LEGACY_ARRIVAL_BITS]


_LEGACY_ARRIVAL_BITS: Final = 42


def apply_horizon_record(part: HorizonMap, key: bytes, value: bytes | None) -> None:
    """One changelog record into a partition's map, rows in order."""
    if value is None:
        return  # a deletion: an older worker's expiry, or a key gone since
    if value[: len(HORIZON_MAGIC)] == HORIZON_MAGIC:
        width = value[len(HORIZON_MAGIC)]
        if width != 2 + part.width:
            raise ValueError(
                f"a changelog record of {width} columns for a map of {2 + part.width} "
                "(another table's changelog?)"
            )
        body = value[len(HORIZON_MAGIC) + 1 :]
        rows = np.frombuffer(body, dtype=_ROW).reshape(-1, width).astype(np.int64)
        part.load(rows[:, :2], rows[:, 2:])
        return
    if key[:1] == BATCH_KEY_PREFIX:
        entries = decode_value(value).items()
    else:
        entries = [(key.decode(), decode_value(value))]
    names: list[str] = []
    loaded: list[list[int]] = []
    for name, entry in entries:
        row = _legacy_value(entry, part.width)
        if row is not None:
            names.append(name)
            loaded.append(row)
    if names:
        part.load(hash_keys(names), np.array(loaded, dtype=np.int64))


def apply_record(part: dict[str, Any], key: bytes, value: bytes | None) -> None:
    """One changelog record of a dict table (`parked`, `premises`) into its partition."""
    if value is None:
        part.pop(key.decode(), None)
    else:
        part[key.decode()] = decode_value(value)


class PartitionedStore(MemoryStore[Any, Any]):
    """Faust's in-memory store, kept as one dict per partition (see the module docstring).

    Faust fills it from the changelog on recovery (`apply_changelog_batch`) and drops the
    partitions this worker no longer owns (`on_rebalance`, `on_recovery_completed`). The
    worker reads and writes `partition(p)` and sends the changelog records itself.
    The flat `self.data` of Faust's store stays empty: nothing here uses the Table's own
    mapping API (it would need a current event).
    """

    parts: dict[int, Any]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parts = {}

    def _new_part(self) -> Any:
        return {}

    def _apply(self, part: Any, key: bytes, value: bytes | None) -> None:
        apply_record(part, key, value)

    def partition(self, partition: int) -> Any:
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = self._new_part()
        return part

    def entries(self) -> int:
        return sum(len(part) for part in self.parts.values())

    def _clear(self) -> None:
        self.parts.clear()

    def apply_changelog_batch(
        self, batch: Iterable[EventT[Any]], to_key: Any = None, to_value: Any = None
    ) -> None:
        """Replay changelog records, in order (a later record for a key wins)."""
        for event in batch:
            message = event.message
            if message.key is not None:
                value = message.value
                self._apply(
                    self.partition(message.partition),
                    bytes(message.key),
                    None if value is None else bytes(value),
                )

    def restore_records(self, partition: int, records: Iterable[Any]) -> None:
        """`apply_changelog_batch` for raw Kafka records of one changelog partition (the
        bulk recovery path of `processors.faust_transport`), in order."""
        part = self.partition(partition)
        for record in records:
            if record.key is not None:
                self._apply(part, record.key, record.value)

    def _own_partitions(self, tps: Iterable[TP]) -> set[int]:
        topic = self.table.changelog_topic.get_topic_name()
        return {tp.partition for tp in tps if tp.topic == topic}

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        for partition in self._own_partitions(revoked):
            self.parts.pop(partition, None)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        keep = self._own_partitions(active_tps)
        for partition in [p for p in self.parts if p not in keep]:
            del self.parts[partition]


class HorizonStore(PartitionedStore):
    """A `PartitionedStore` of `HorizonMap`s, for `seen` and `last_kept`."""

    width: int

    def _new_part(self) -> HorizonMap:
        return HorizonMap(self.width)

    def _apply(self, part: Any, key: bytes, value: bytes | None) -> None:
        apply_horizon_record(part, key, value)

    def entries(self) -> int:
        """Entries in memory: live, or past the horizon until their slot is reused or a
        rebuild drops them (the exact live count is a pass over every table)."""
        return sum(part.used for part in self.parts.values())


class PartitionedTable(Table[Any, Any]):
    """A Faust table whose store is a `PartitionedStore` (raw keys and values: the worker
    encodes changelog records itself, `changelog_records`)."""

    store_class: type[PartitionedStore] = PartitionedStore

    def _new_store(self) -> PartitionedStore:
        return self.store_class(
            "memory://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )

    @property
    def store(self) -> PartitionedStore:
        data = self.data
        if not isinstance(data, PartitionedStore):  # only if someone swapped the store
            raise TypeError(f"table {self.name} has a {type(data).__name__} store")
        return data


class HorizonTable(PartitionedTable):
    """`seen` or `last_kept`: partitions of `width`-value `HorizonMap`s, a changelog of
    batch records that Kafka deletes by age (`horizon_ms` x `HORIZON_RETENTION`), not by key
    (see the module docstring)."""

    store_class = HorizonStore

    def __init__(self, *args: Any, horizon_ms: int, width: int, **kwargs: Any) -> None:
        self.horizon_ms = horizon_ms  # before Faust's init, which may make the topic
        self.width = width
        super().__init__(*args, **kwargs)

    def _new_store(self) -> PartitionedStore:
        store = super()._new_store()
        assert isinstance(store, HorizonStore)
        store.width = self.width
        return store

    def _new_changelog_topic(
        self,
        *,
        retention: Any = None,
        compacting: bool | None = None,
        deleting: bool | None = None,
    ) -> Any:
        self.extra_topic_configs = {
            **self.extra_topic_configs,
            "segment.ms": str(max(60_000, self.horizon_ms // HORIZON_SEGMENTS)),
        }
        return super()._new_changelog_topic(
            retention=self.horizon_ms * HORIZON_RETENTION / 1000,  # seconds, for Faust
            compacting=False,
            deleting=True,
        )
