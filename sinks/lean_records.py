"""Kafka records without aiokafka's per-record `ConsumerRecord`.

aiokafka parses record batches in C, then wraps every record in a Python `ConsumerRecord`
(eleven fields, sizes, deserializers): the single largest cost of the sink's main thread
(about 15 % of its samples in a py-spy profile of `python -m bench sink`). The sink needs
only each record's `offset` and `value`, which the C record already carries, and gets the
topic and partition from `getmany`'s keys.

A consumer opts in by passing `key_deserializer=LEAN`; every other consumer in the process
gets aiokafka's records as before. aiokafka is pinned (<0.15) because this overrides one
internal method (`PartitionRecords._consumer_record`); tests/unit/sinks/test_lean_records.py
fails if its signature moves.
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer import fetcher


def LEAN(key: bytes | None) -> bytes | None:  # a marker, named like a constant
    """The marker key deserializer (keys are returned as they are)."""
    return key


class _LeanPartitionRecords(fetcher.PartitionRecords):  # type: ignore[misc]  # untyped
    def _consumer_record(self, tp: Any, record: Any) -> Any:
        if self._key_deserializer is LEAN:
            return record  # the C record: .offset, .value, .key, .timestamp, .headers
        return super()._consumer_record(tp, record)


def install() -> None:
    """Make aiokafka's fetcher build `_LeanPartitionRecords` (idempotent, process-wide;
    consumers without the marker are unaffected)."""
    fetcher.PartitionRecords = _LeanPartitionRecords
