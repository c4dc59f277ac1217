"""Lean Kafka records: real aiokafka record batches through the patched fetcher
classes, with and without the marker."""

from __future__ import annotations

import inspect

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord, TopicPartition

from ingest import lean_records
from ingest.lean_records import LEAN, _LeanPartitionRecords, install

TP = TopicPartition("t.scans.enriched", 3)


def batch_bytes(values: list[bytes], base_offset: int = 40) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=b"NT-1", value=value, headers=[])
    buf = bytearray(builder.build())
    buf[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns offsets
    return bytes(buf)


def records(key_deserializer: object) -> list[object]:
    data = batch_bytes([b"a", b"b", b"c"])
    part = _LeanPartitionRecords(TP, MemoryRecords(data), [], 41, key_deserializer, None, True, 0)
    return list(part)


def test_with_the_marker_records_are_the_parsed_ones_offsets_and_values_intact() -> None:
    got = records(LEAN)
    assert [(r.offset, r.value) for r in got] == [(41, b"b"), (42, b"c")]  # from fetch_offset
    assert not isinstance(got[0], ConsumerRecord)


def test_without_the_marker_aiokafka_records_as_before() -> None:
    got = records(None)
    assert all(isinstance(r, ConsumerRecord) for r in got)
    assert [(r.topic, r.partition, r.offset, r.key) for r in got] == [
        (TP.topic, 3, 41, b"NT-1"),
        (TP.topic, 3, 42, b"NT-1"),
    ]


def test_the_overridden_internal_still_exists_with_its_signature() -> None:
    install()
    assert fetcher.PartitionRecords is _LeanPartitionRecords
    params = list(
        inspect.signature(fetcher.PartitionRecords.__mro__[1]._consumer_record).parameters
    )
    assert params == ["self", "tp", "record"]


def test_a_topic_installed_as_lean_gets_parsed_records_in_every_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lean_records, "LEAN_TOPICS", set())
    install([TP.topic])
    assert [(r.offset, r.value) for r in records(None)] == [(41, b"b"), (42, b"c")]
    other = TopicPartition("t.premises", 3)
    data = batch_bytes([b"a", b"b"])
    part = _LeanPartitionRecords(other, MemoryRecords(data), [], 40, None, None, True, 0)
    assert all(isinstance(r, ConsumerRecord) for r in part)  # other topics as before
