"""The worker's per-partition table views and the store Faust recovers them into."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import pytest
from faust.types import TP

from processors.horizon import HorizonMap, hash_keys
from processors.tables import (
    BATCH_KEY_PREFIX,
    BIG_INT_EXT,
    HORIZON_MAGIC,
    HorizonStore,
    PartitionedStore,
    PartitionView,
    changelog_records,
    decode_value,
    encode_value,
    horizon_records,
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


def _horizon_store(width: int) -> HorizonStore:
    store = HorizonStore.__new__(HorizonStore)
    store.parts = {}
    store.table = _Table()
    store.width = width
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


LK_ARRIVAL, LK_SCANNED_AT = 1_700_000_999_456, 1_700_000_000_123
KEY = "p\x1fP\x1fcheckin"


def test_a_batch_of_horizon_changes_is_one_record_and_replays_in_order() -> None:
    live = HorizonMap(2)
    live.upsert(hash_keys(["a", KEY]), np.array([[1, 2], [LK_ARRIVAL, LK_SCANNED_AT]]))
    live.upsert(hash_keys(["a"]), np.array([[3, 4]]))  # written again: the last wins
    keys, values = live.commit()
    [(key, value)] = horizon_records(keys, values, 1_000_000)
    assert key[:1] == BATCH_KEY_PREFIX and len(key) == 13
    assert value is not None and value.startswith(HORIZON_MAGIC)
    assert len(value) == len(HORIZON_MAGIC) + 1 + 3 * 4 * 8  # 3 rows of 4 int64
    store = _horizon_store(2)
    store.apply_changelog_batch([_Event(_Message(key, value, 1))])  # type: ignore[arg-type]
    part = store.partition(1)
    assert (part.get("a"), part.get(KEY), part.get("b")) == (
        (3, 4),
        (LK_ARRIVAL, LK_SCANNED_AT),
        None,
    )
    assert store.entries() == 2


def test_a_record_of_another_width_is_refused() -> None:
    rows = horizon_records(hash_keys(["k"]), np.array([[1, 2]]), 1_000_000)
    with pytest.raises(ValueError, match="4 columns for a map of 3"):
        _horizon_store(1).restore_records(0, [_Record(k, v) for k, v in rows])


def test_an_older_workers_horizon_records_are_still_read() -> None:
    """msgpack maps of string keys (one record per batch, `last_kept` as one packed int or
    its 16 bytes) and one record per key (a packed int as msgpack's ext type)."""
    packed = LK_SCANNED_AT << 42 | LK_ARRIVAL
    batch = msgpack.packb(
        {"k1": packed.to_bytes(16, "big", signed=True), "gone": None}, use_bin_type=True
    )
    per_key = msgpack.packb(msgpack.ExtType(BIG_INT_EXT, packed.to_bytes(16, "big", signed=True)))
    store = _horizon_store(2)
    store.restore_records(
        0,
        [
            _Record(BATCH_KEY_PREFIX + b"x" * 12, batch),
            _Record(b"k2", per_key),
            _Record(b"k3", None),
        ],
    )
    part = store.partition(0)
    assert part.get("k1") == part.get("k2") == (LK_ARRIVAL, LK_SCANNED_AT)
    assert store.entries() == 2
    seen = _horizon_store(1)
    seen.restore_records(0, [_Record(BATCH_KEY_PREFIX + b"y" * 12, msgpack.packb({"e1": 5}))])
    assert seen.partition(0).get("e1") == (5,)


def test_horizon_records_split_to_fit_kafka_and_never_share_a_key() -> None:
    names = [f"event-{i:06d}" for i in range(5000)]
    keys = hash_keys(names)
    values = np.arange(1_700_000_000_000, 1_700_000_005_000, dtype=np.int64)[:, None]
    [whole] = horizon_records(keys, values, 1_000_000)
    small = horizon_records(keys, values, 20_000)
    assert (
        all(v is not None and len(v) <= 20_000 for _, v in small) and len(small) == 7
    )  # 833 rows a record
    for split in ([whole], small):
        assert len({k for k, _ in split}) == len(split)
        store = _horizon_store(1)
        store.restore_records(0, [_Record(k, v) for k, v in split])
        got = store.partition(0).lookup(keys, -1)
        assert got[:, 0].tolist() == values[:, 0].tolist()


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


def test_a_value_msgpack_cannot_carry_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_value(object())
