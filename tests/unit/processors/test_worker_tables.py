"""The worker's per-partition table views and the store Faust recovers them into."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from faust.types import TP

from processors.state import ARRIVAL_BITS, ARRIVAL_MASK, last_kept_value
from processors.tables import (
    BATCH_ENTRIES,
    BATCH_KEY_PREFIX,
    PartitionedStore,
    PartitionView,
    apply_record,
    batch_records,
    changelog_records,
    decode_value,
    encode_value,
)


def test_view_reads_and_writes_its_dict() -> None:
    data: dict[str, Any] = {"a": 1}
    view = PartitionView(data)
    view["b"] = [1, b"x"]
    assert view.get("a") == 1 and view["b"] == [1, b"x"] and "b" in view
    assert view.get("zz") is None and view.get("zz", 5) == 5
    assert sorted(view.keys()) == ["a", "b"] and len(view) == 2
    assert dict(view.items()) == data == {"a": 1, "b": [1, b"x"]}
    del view["a"]
    assert view.pop("b") == [1, b"x"]
    assert view.pop("b", None) is None
    with pytest.raises(KeyError):
        view.pop("b")
    with pytest.raises(KeyError):
        del view["a"]
    assert data == {}


def test_commit_returns_the_last_value_per_key_and_tombstones() -> None:
    view = PartitionView({"gone": 1, "kept": 2})
    view["new"] = 1
    view["new"] = 2
    del view["gone"]
    view["back"] = 3
    del view["back"]
    assert view.commit() == {"new": 2, "gone": None, "back": None}
    assert view.commit() == {}


def test_rollback_restores_the_dict_as_of_the_last_commit() -> None:
    data: dict[str, Any] = {"a": 1, "b": 2}
    view = PartitionView(data)
    view["c"] = 3
    view.commit()
    view["a"] = 10
    view["a"] = 11
    del view["b"]
    view["d"] = 4
    view["b"] = 20
    view.rollback()
    assert data == {"a": 1, "b": 2, "c": 3}
    assert view.commit() == {}


def test_changelog_records_are_utf8_keys_and_msgpack_values() -> None:
    records = changelog_records({"é1": (5, 6), "x": None, "p": [[b"raw", "t", 1]]})
    assert records[0] == ("é1".encode(), msgpack.packb([5, 6]))
    assert records[1] == (b"x", None)
    assert decode_value(records[2][1] or b"") == [[b"raw", "t", 1]]


@dataclass
class _Message:
    key: bytes | None
    value: bytes | None
    partition: int


@dataclass
class _Event:
    message: _Message


@dataclass
class _Record:  # a raw Kafka record as the bulk recovery path gets it
    key: bytes | None
    value: bytes | None


class _Topic:
    def get_topic_name(self) -> str:
        return "app-seen-changelog"


class _Table:
    changelog_topic = _Topic()


def _store() -> PartitionedStore:
    store = PartitionedStore.__new__(PartitionedStore)  # no Faust app needed for the dicts
    store.parts = {}
    store.table = _Table()
    return store


def test_recovery_replays_changelog_records_per_partition_in_order() -> None:
    store = _store()
    batch = [
        _Event(_Message(b"k1", msgpack.packb(1), 0)),
        _Event(_Message(b"k2", msgpack.packb([2, 3]), 1)),
        _Event(_Message(b"k1", msgpack.packb(4), 0)),
        _Event(_Message(b"k3", msgpack.packb(5), 0)),
        _Event(_Message(b"k3", None, 0)),
        _Event(_Message(None, msgpack.packb(9), 0)),  # not ours: skipped
    ]
    store.apply_changelog_batch(batch)
    assert store.parts == {0: {"k1": 4}, 1: {"k2": [2, 3]}}
    assert store.entries() == 2


def test_changes_replayed_from_the_changelog_give_the_same_state() -> None:
    data: dict[str, Any] = {}
    view = PartitionView(data)
    view["a"] = (1, 2)
    view["b"] = [[b"\x00raw", "topic", 3, None]]
    view.commit()
    view["c"] = 7
    del view["a"]
    changes = changelog_records(view.commit())
    first = changelog_records({"a": (1, 2), "b": [[b"\x00raw", "topic", 3, None]]})
    store = _store()
    store.apply_changelog_batch(
        [_Event(_Message(k, v, 2)) for k, v in first + changes]  # type: ignore[arg-type]
    )
    assert store.partition(2) == {"b": [[b"\x00raw", "topic", 3, None]], "c": 7} == data


def test_a_batch_of_horizon_changes_is_one_record_and_replays_in_order() -> None:
    packed = last_kept_value(1_700_000_000_123, 1_700_000_999_456)
    changes: dict[str, Any] = {"e1": 5, "e2": None, "p\x1fP\x1fcheckin": packed}
    [(key, value)] = batch_records(changes, 1_000_000)
    assert key[:1] == BATCH_KEY_PREFIX and len(key) == 13
    store = _store()
    store.partition(1).update({"e2": 1, "e1": 2, "old": 3})
    # an older worker's per-key record, then the batch record: applied in order
    legacy = changelog_records({"e3": 4})
    store.apply_changelog_batch(
        [_Event(_Message(k, v, 1)) for k, v in [*legacy, (key, value)]]  # type: ignore[arg-type]
    )
    # e1 written again moves to the end (the sweep order of `expire`); e2 deleted
    assert list(store.partition(1).items()) == [
        ("old", 3),
        ("e3", 4),
        ("e1", 5),
        ("p\x1fP\x1fcheckin", packed),
    ]
    assert store.partition(1)["p\x1fP\x1fcheckin"] >> ARRIVAL_BITS == 1_700_000_000_123


def test_wide_ints_travel_as_16_bytes_and_come_back_as_ints() -> None:
    packed = last_kept_value(1_700_000_000_123, 1_700_000_999_456)
    assert packed.bit_length() > 64  # what msgpack cannot pack as an int
    changes: dict[str, Any] = {"a": packed, "b": None, "c": 7, "d": -(1 << 70)}
    [(key, value)] = batch_records(changes, 1_000_000, wide_ints=True)
    assert msgpack.unpackb(value or b"")["a"] == packed.to_bytes(16, "big", signed=True)
    # the same changes through the ext type (what this worker wrote before): the same state
    [(old_key, old_value)] = batch_records(changes, 1_000_000)
    for k, v in ((key, value), (old_key, old_value)):
        part: dict[str, Any] = {"b": 1}
        apply_record(part, k, v)
        assert part == {"a": packed, "c": 7, "d": -(1 << 70)}


def test_batch_records_split_to_fit_kafka_and_never_share_a_key() -> None:
    changes = {f"event-{i:06d}": 1_700_000_000_000 + i for i in range(BATCH_ENTRIES + 10)}
    records = batch_records(changes, 1_000_000)
    assert len(records) == 2  # BATCH_ENTRIES a record
    small = batch_records(changes, 20_000)
    assert all(v is not None and len(v) <= 20_000 for _, v in small) and len(small) > 8
    for split in (records, small):
        assert len({k for k, _ in split}) == len(split)
        store = _store()
        store.restore_records(0, [_Record(k, v) for k, v in split])
        assert store.partition(0) == changes and list(store.partition(0)) == list(changes)


def test_partitions_that_move_away_are_dropped() -> None:
    store = _store()
    store.partition(0)["a"] = 1
    store.partition(1)["b"] = 1
    store.partition(2)["c"] = 1
    topic = "app-seen-changelog"
    revoked = {TP(topic, 1), TP("other", 0)}
    asyncio.run(store.on_rebalance({TP(topic, 0), TP(topic, 2)}, revoked, set()))
    assert sorted(store.parts) == [0, 2]
    asyncio.run(store.on_recovery_completed({TP(topic, 2), TP("other", 0)}, set()))
    assert sorted(store.parts) == [2]


def test_ints_wider_than_64_bits_survive_the_changelog() -> None:
    packed = last_kept_value(1_700_000_000_123, 1_700_000_999_456)  # 84 bits
    assert packed >= 2**64
    records = changelog_records({"p\x1fP\x1fcheckin": packed, "small": 5, "neg": -(2**70)})
    store = _store()
    store.apply_changelog_batch([_Event(_Message(k, v, 0)) for k, v in records])  # type: ignore[arg-type]
    assert store.partition(0) == {"p\x1fP\x1fcheckin": packed, "small": 5, "neg": -(2**70)}
    assert decode_value(records[0][1] or b"") >> ARRIVAL_BITS == 1_700_000_000_123
    assert decode_value(records[0][1] or b"") & ARRIVAL_MASK == 1_700_000_999_456
    with pytest.raises(TypeError):
        encode_value(object())
