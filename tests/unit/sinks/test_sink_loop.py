"""The sink loop against a fake consumer and the in-memory writer: commits after inserts,
pause and retry on transient errors, bisection of refused rows, rollup scheduling."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from sinks_testkit import DLQ, ENRICHED, NOW, PREMISES, make_sink, scan_value

from ingest.premises import Premises, encode_premises
from sinks.consume_loop import Sink, SinkFatal
from sinks.rollup import local_day
from sinks.testing import FlakyWriter, MemoryWriter
from sinks.writer import WriteError


def run(sink: Sink, steps: int = 1) -> None:
    async def go() -> None:
        for _ in range(steps):
            await sink.step()
            await sink.settle()  # the flush the step started, committed or failed

    asyncio.run(go())


def values(n: int, start: int = 0) -> list[bytes | None]:
    return [scan_value(i) for i in range(start, start + n)]


def sample(registry: Any, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_full_chunks_are_inserted_then_committed() -> None:
    sink, consumer, writer, _clock, registry = make_sink(batch_rows=4)
    consumer.feed(ENRICHED, 0, 100, values(10))
    run(sink)
    assert [(t, tok, n) for t, tok, n in writer.inserts] == [
        ("scans", f"{ENRICHED}:0:100-103", 4),
        ("scans", f"{ENRICHED}:0:104-107", 4),
    ]
    assert consumer.committed_offset(ENRICHED, 0) == 108
    assert len(writer.tables["scans"]) == 8
    assert sample(registry, "scantrace_sink_rows_written_total", table="scans") == 8
    assert sample(registry, "scantrace_sink_records_consumed_total", topic=ENRICHED) == 10
    assert sample(registry, "scantrace_sink_batches_total", table="scans") == 2
    assert (
        sample(registry, "scantrace_sink_end_to_end_latency_seconds_count", since="scanned_at") == 8
    )
    assert sample(registry, "scantrace_sink_last_success_timestamp_seconds") > 0


def test_the_tail_is_flushed_by_time_once_caught_up() -> None:
    sink, consumer, writer, clock, _ = make_sink(batch_rows=4, batch_seconds=1.0)
    consumer.feed(ENRICHED, 1, 0, values(6))
    run(sink)
    assert consumer.committed_offset(ENRICHED, 1) == 4
    clock.t += 0.5
    run(sink)
    assert consumer.committed_offset(ENRICHED, 1) == 4
    clock.t += 0.5
    run(sink)
    assert consumer.committed_offset(ENRICHED, 1) == 6
    assert writer.inserts[-1] == ("scans", f"{ENRICHED}:1:4-5", 2)


def test_a_steady_stream_short_of_a_batch_is_flushed_by_time_a_backlog_is_not() -> None:
    sink, consumer, writer, clock, _ = make_sink(batch_rows=4, batch_seconds=1.0)
    consumer.feed(ENRICHED, 1, 0, values(6))
    assert writer.inserts == []
    consumer.high[TopicPartition(ENRICHED, 1)] = 7  # one more written, not yet fetched
    run(sink)
    assert consumer.committed_offset(ENRICHED, 1) == 4
    clock.t += 1.0
    run(sink)  # offsets 4-6 cannot make a batch of 4: the tail goes by time
    assert consumer.committed_offset(ENRICHED, 1) == 6
    consumer.feed(ENRICHED, 1, 6, values(1, 6))
    consumer.high[TopicPartition(ENRICHED, 1)] = 20  # a backlog: wait for full batches
    run(sink)
    clock.t += 1.0
    run(sink)
    assert consumer.committed_offset(ENRICHED, 1) == 6


def test_the_tails_of_one_cut_go_in_one_insert_full_slices_in_their_own() -> None:
    sink, consumer, writer, clock, registry = make_sink(batch_rows=5, batch_seconds=1.0)
    consumer.feed(ENRICHED, 0, 0, values(6))
    consumer.feed(ENRICHED, 1, 10, values(3, 100))
    run(sink, 2)  # the full slice of partition 0 at once (one poll a step)
    clock.t += 1.0
    run(sink)  # then both tails, together
    tail = f"{ENRICHED}:0:5-5+{ENRICHED}:1:10-12"
    assert writer.inserts == [("scans", f"{ENRICHED}:0:0-4", 5), ("scans", tail, 4)]
    assert (consumer.committed_offset(ENRICHED, 0), consumer.committed_offset(ENRICHED, 1)) == (
        6,
        13,
    )
    assert len(writer.tables["scans"]) == 9
    assert sample(registry, "scantrace_sink_rows_written_total", table="scans") == 9


def flush_two_tails(sink: Sink, consumer: Any, clock: Any) -> None:
    """Tails of 2 and 3 scans on partitions 0 and 1, both due in one cut."""
    consumer.feed(ENRICHED, 0, 0, values(2))
    consumer.feed(ENRICHED, 1, 0, values(3, 100))
    run(sink, 2)  # one poll a step
    clock.t += 1.0
    run(sink)


def test_tails_stored_together_are_retried_together_with_the_same_token() -> None:
    memory = MemoryWriter()
    flaky = FlakyWriter(memory, failures=1, after_write=True)  # stored, answer lost
    sink, consumer, _, clock, _ = make_sink(flaky, batch_rows=8, batch_seconds=1.0)
    flush_two_tails(sink, consumer, clock)
    consumer.feed(ENRICHED, 1, 3, values(1, 200))  # a newer tail is not in the retry
    clock.t += 5
    run(sink, 2)  # the retry, then the newer record (held while paused)
    clock.t += 1.0
    run(sink)
    tail = f"{ENRICHED}:0:0-1+{ENRICHED}:1:0-2"
    assert [tok for _, tok, _ in memory.inserts][:2] == [tail, tail]
    assert len(memory.tables["scans"]) == 6  # 2 + 3 once, and the newer one
    assert consumer.committed_offset(ENRICHED, 1) == 4


def test_tails_stored_together_stay_within_batch_rows() -> None:
    sink, consumer, writer, clock, _ = make_sink(batch_rows=4, batch_seconds=1.0)
    for p, n in ((0, 3), (1, 2), (0, 0), (1, 0)):  # two tails of 3 and 2: 5 > 4
        if n:
            consumer.feed(ENRICHED, p, 0, values(n, 100 * p))
    run(sink, 2)
    clock.t += 1.0
    run(sink)
    assert [(tok, n) for _, tok, n in writer.inserts] == [
        (f"{ENRICHED}:0:0-2", 3),
        (f"{ENRICHED}:1:0-1", 2),
    ]


def test_tails_refused_together_are_inserted_one_by_one() -> None:
    class RefusesJoined(MemoryWriter):
        def insert(
            self, table: str, columns: Sequence[str], data: list[list[Any]], token: str
        ) -> None:
            if "+" in token:
                raise WriteError("terminal", ValueError("a bad row"), "insert")
            super().insert(table, columns, data, token)

    writer = RefusesJoined()
    sink, consumer, _, clock, registry = make_sink(writer, batch_rows=8, batch_seconds=1.0)
    flush_two_tails(sink, consumer, clock)
    assert [tok for _, tok, _ in writer.inserts] == [f"{ENRICHED}:0:0-1", f"{ENRICHED}:1:0-2"]
    assert len(writer.tables["scans"]) == 5
    assert sample(registry, "scantrace_sink_insert_failures_total", kind="terminal") == 1
    assert consumer.committed_offset(ENRICHED, 1) == 3


def test_transient_failure_pauses_retries_the_same_chunks_and_resumes() -> None:
    memory = MemoryWriter()
    flaky = FlakyWriter(memory, failures=2)
    sink, consumer, _, clock, registry = make_sink(flaky, batch_rows=4)
    consumer.feed(ENRICHED, 0, 0, values(8))
    run(sink)
    assert consumer.commits == [] and consumer.paused_tps == consumer.assigned
    assert sample(registry, "scantrace_sink_paused") == 1
    consumer.feed(ENRICHED, 1, 0, values(4, 100))  # arrives while paused: held by Kafka
    clock.t += 0.4
    run(sink)
    assert flaky.failed == 1  # not yet: the backoff is 0.5 s
    clock.t += 0.1
    run(sink)
    assert flaky.failed == 2  # second failure: next wait 1 s
    clock.t += 1.0
    run(sink)
    assert consumer.committed_offset(ENRICHED, 0) == 8
    assert consumer.paused_tps == set()
    assert sample(registry, "scantrace_sink_paused") == 0
    assert sample(registry, "scantrace_sink_retries_total") == 2
    assert sample(registry, "scantrace_sink_insert_failures_total", kind="transient") == 2
    tokens = [tok for table, tok, _ in memory.inserts if table == "scans"]
    assert tokens[:2] == [f"{ENRICHED}:0:0-3", f"{ENRICHED}:0:4-7"]  # the same chunks
    run(sink, 2)
    assert consumer.committed_offset(ENRICHED, 1) == 4  # the held records, after resume
    assert len(memory.tables["scans"]) == 12


def test_an_insert_whose_answer_was_lost_is_retried_without_duplicates() -> None:
    memory = MemoryWriter()
    flaky = FlakyWriter(memory, failures=3, after_write=True)
    sink, consumer, _, clock, registry = make_sink(flaky, batch_rows=4)
    consumer.feed(ENRICHED, 0, 0, values(8))
    for _ in range(4):
        run(sink)
        clock.t += 10
    assert flaky.failed == 3
    assert consumer.committed_offset(ENRICHED, 0) == 8
    assert sorted(r[0] for r in memory.tables["scans"]) == sorted(f"e{i}" for i in range(8))
    # counted once, however often it was sent
    assert sample(registry, "scantrace_sink_rows_written_total", table="scans") == 8


class RefusingWriter(MemoryWriter):
    """Refuses (terminal) any insert holding one of `bad` event ids, like ClickHouse
    refusing a block for one value that does not fit its column."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        if table == "scans" and self.bad & set(data[0]):
            raise WriteError("terminal", ValueError("value does not fit"), table)
        super().insert(table, columns, data, token)


def test_a_refused_row_is_dead_lettered_not_the_batch() -> None:
    writer = RefusingWriter({"e5"})
    sink, consumer, _, _, registry = make_sink(writer, batch_rows=8)
    consumer.feed(ENRICHED, 0, 50, values(8))
    run(sink)
    assert sorted(r[0] for r in writer.tables["scans"]) == [f"e{i}" for i in range(8) if i != 5]
    [dead] = writer.tables["dead_letters"]
    assert dead[:2] == ("sink", "clickhouse_rejected")
    assert dead[3] == scan_value(5) and dead[4:7] == (ENRICHED, 0, 55) and dead[8] == "e5"
    assert consumer.committed_offset(ENRICHED, 0) == 58
    assert sample(registry, "scantrace_sink_dead_letters_total", reason="clickhouse_rejected") == 1
    assert sample(registry, "scantrace_sink_rows_written_total", table="scans") == 7
    assert sample(registry, "scantrace_sink_rows_written_total", table="dead_letters") == 1


def test_a_chunk_refused_row_by_row_stops_the_sink_instead() -> None:
    writer = RefusingWriter({f"e{i}" for i in range(200)})
    sink, consumer, _, _, _ = make_sink(writer, batch_rows=128)
    consumer.feed(ENRICHED, 0, 0, values(128))
    with pytest.raises(SinkFatal, match="every row"):
        run(sink)
    assert consumer.commits == [] and "dead_letters" not in writer.tables


def test_fatal_stops_without_commit() -> None:
    flaky = FlakyWriter(MemoryWriter(), failures=1, kind="fatal")
    sink, consumer, _, _, _ = make_sink(flaky, batch_rows=4)
    consumer.feed(ENRICHED, 0, 0, values(4))
    with pytest.raises(SinkFatal):
        run(sink)
    assert consumer.commits == []


def test_backoff_doubles_up_to_the_cap() -> None:
    flaky = FlakyWriter(MemoryWriter(), failures=100)
    sink, consumer, _, clock, _ = make_sink(
        flaky, batch_rows=1, retry_initial_seconds=1.0, retry_max_seconds=4.0
    )
    consumer.feed(ENRICHED, 0, 0, values(1))
    waits = []
    for _ in range(6):
        before = flaky.failed
        while flaky.failed == before:
            clock.t += 0.25
            run(sink)
        waits.append(sink.flow.retry_at - clock.t)
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


def test_premises_dead_letters_and_decode_failures_reach_their_tables() -> None:
    sink, consumer, writer, clock, registry = make_sink(batch_rows=100)
    p1 = Premises("NT-1", "Cho", "market", "D1", version=1)
    p2 = Premises("NT-1", "Cho moi", "market", "D1", version=2)
    consumer.feed(PREMISES, 0, 0, [encode_premises(p1), encode_premises(p2), None])
    consumer.feed(DLQ, 0, 7, [b"\xc1"])
    consumer.feed(ENRICHED, 0, 0, [scan_value(1), b"\xc1broken"])
    run(sink, 3)
    clock.t += 1
    run(sink)
    assert [r[9:11] for r in writer.tables["premises"]] == [(45, 1), (45, 2)]
    reasons = sorted((r[1], r[4], r[6]) for r in writer.tables["dead_letters"])
    assert reasons == [("undecodable", DLQ, 7), ("undecodable", ENRICHED, 1)]
    assert consumer.committed_offset(PREMISES, 0) == 3
    assert consumer.committed_offset(DLQ, 0) == 8
    assert sample(registry, "scantrace_sink_records_skipped_total", reason="tombstone") == 1
    assert sample(registry, "scantrace_sink_dead_letters_total", reason="undecodable") == 2


def test_revoked_partitions_are_forgotten() -> None:
    flaky = FlakyWriter(MemoryWriter(), failures=1)
    sink, consumer, _, clock, _ = make_sink(flaky, batch_rows=2)
    consumer.feed(ENRICHED, 0, 0, values(3))
    run(sink)  # fails: retry pending for partition 0, one record buffered
    sink.forget([(ENRICHED, 0)])
    assert sink.batcher.pending() == 0 and sink.flow.queue == []
    consumer.assigned.discard(TopicPartition(ENRICHED, 0))
    clock.t += 5
    run(sink)
    assert consumer.commits == []


def test_drain_writes_everything_and_commits() -> None:
    sink, consumer, writer, clock, _ = make_sink(batch_rows=100, batch_seconds=60)
    consumer.feed(ENRICHED, 0, 0, values(3))
    run(sink)
    assert consumer.commits == []
    asyncio.run(sink.drain(clock.t + 5))
    assert consumer.committed_offset(ENRICHED, 0) == 3
    assert len(writer.tables["scans"]) == 3
    assert writer.refreshed == [[local_day(NOW)]]


def test_rollup_refreshes_touched_and_previously_dirty_days_within_retention() -> None:
    writer = MemoryWriter()
    today = local_day(NOW)
    writer.dirty = [today - timedelta(days=3), date(2020, 1, 1)]  # the second has expired
    sink, consumer, _, clock, registry = make_sink(writer, batch_rows=2, rollup_seconds=60)
    consumer.feed(ENRICHED, 0, 0, values(2))
    run(sink, 2)  # the rollup waits for a round without a flush in flight
    assert writer.refreshed == [[today - timedelta(days=3), today]]
    consumer.feed(ENRICHED, 0, 2, values(2, 2))
    run(sink)
    assert len(writer.refreshed) == 1  # not before rollup_seconds
    clock.t += 60
    run(sink)
    assert writer.refreshed[-1] == [today]
    assert sample(registry, "scantrace_sink_rollup_days_refreshed_total") == 3


class HeldRollup(MemoryWriter):
    """A rollup writer whose refresh runs until the test lets it end."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def refresh_rollup(self, days: Sequence[date]) -> None:
        self.started.set()
        assert self.release.wait(10)
        super().refresh_rollup(days)


def test_a_rollup_on_its_own_writer_runs_beside_the_inserts() -> None:
    rollups = HeldRollup()
    rollups.dirty = [local_day(NOW)]  # the first rollup has work whatever the flush's timing
    sink, consumer, writer, clock, registry = make_sink(
        batch_rows=2, rollup_seconds=60, rollup_writer=rollups
    )

    async def go() -> None:
        consumer.feed(ENRICHED, 0, 0, values(2))
        await sink.step()  # starts the flush and, due at once, the rollup
        await sink.settle()
        assert await asyncio.to_thread(rollups.started.wait, 5)
        for i in range(1, 4):  # inserts and commits go on while the rollup runs
            consumer.feed(ENRICHED, 0, 2 * i, values(2, 2 * i))
            await sink.step()
            await sink.settle()
        assert consumer.committed_offset(ENRICHED, 0) == 8
        assert rollups.refreshed == [] and writer.refreshed == []
        clock.t += 60
        await sink.step()  # due again, but one is running: no second one
        rollups.release.set()
        await sink.drain(clock.t + 5)

    asyncio.run(go())
    assert len(writer.tables["scans"]) == 8
    assert writer.refreshed == []  # the insert connection never ran a rollup
    assert rollups.refreshed == [[local_day(NOW)], [local_day(NOW)]]  # the one due, the last
    assert sample(registry, "scantrace_sink_rollup_days_refreshed_total") == 2


def test_a_fatal_rollup_error_beside_the_inserts_stops_the_sink() -> None:
    class Broken(MemoryWriter):
        def refresh_rollup(self, days: Sequence[date]) -> None:
            raise WriteError("fatal", RuntimeError("no table"), "rollup refresh")

    sink, consumer, _, _, _ = make_sink(batch_rows=2, rollup_writer=Broken())

    async def go() -> None:
        consumer.feed(ENRICHED, 0, 0, values(2))
        for _ in range(20):
            await sink.step()
            await sink.settle()
            await asyncio.sleep(0.01)

    with pytest.raises(SinkFatal, match="no table"):
        asyncio.run(go())


def test_lag_is_reported_per_partition() -> None:
    sink, consumer, _, _clock, registry = make_sink(batch_rows=4)
    consumer.feed(ENRICHED, 0, 0, values(6))
    consumer.high[TopicPartition(ENRICHED, 0)] = 10
    run(sink)
    assert sample(registry, "scantrace_sink_consumer_lag", topic=ENRICHED, partition="0") == 6


def test_a_commit_marker_after_the_last_stored_record_is_no_lag() -> None:
    """Under exactly_once the worker's commit marker follows its last record: the consumer's
    position is past it, and nothing is left to store."""
    sink, consumer, _, _clock, registry = make_sink(batch_rows=4)
    consumer.feed(ENRICHED, 0, 0, values(4))
    consumer.high[TopicPartition(ENRICHED, 0)] = 5  # the marker at offset 4
    run(sink)
    assert consumer.committed_offset(ENRICHED, 0) == 4
    sink._next_lag = 0.0
    run(sink)
    assert sample(registry, "scantrace_sink_consumer_lag", topic=ENRICHED, partition="0") == 0


def test_every_round_of_the_loop_beats_the_heartbeat_records_or_not() -> None:
    sink, _, _, clock, _ = make_sink(batch_rows=4)
    clock.t += 50
    assert sink.heartbeat.age() == 50
    run(sink)  # nothing to fetch
    assert sink.heartbeat.age() == 0


def test_rollup_passes_set_their_timestamp_and_failures_are_counted() -> None:
    class Failing(MemoryWriter):
        def refresh_rollup(self, days: Sequence[date]) -> None:
            raise WriteError("transient", RuntimeError("timeout"), "rollup refresh")

    sink, consumer, _, clock, registry = make_sink(Failing(), batch_rows=2, rollup_seconds=60)
    run(sink)  # nothing dirty: the reports are up to date
    first = sample(registry, "scantrace_sink_rollup_last_success_timestamp_seconds")
    assert first > 0
    consumer.feed(ENRICHED, 0, 0, values(2))
    clock.t += 60
    run(sink, 2)
    assert sample(registry, "scantrace_sink_rollup_failures_total") == 1
    assert sample(registry, "scantrace_sink_rollup_last_success_timestamp_seconds") == first


class SlowWriter(MemoryWriter):
    """Holds every insert until `go` is set: ClickHouse busy with a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def insert(self, table: str, columns: Sequence[str], data: list[list[Any]], token: str) -> None:
        assert self.go.wait(10)
        super().insert(table, columns, data, token)


def test_fetching_goes_on_during_a_flush_until_two_batches_wait() -> None:
    writer = SlowWriter()
    sink, consumer, _, _, _ = make_sink(writer, batch_rows=4)

    async def go() -> None:
        consumer.feed(ENRICHED, 0, 0, values(4))
        await sink.step()  # cut and started: the insert is held
        assert sink.flow.inflight is not None and not consumer.paused_tps
        consumer.feed(ENRICHED, 0, 4, values(4, 4))
        consumer.feed(ENRICHED, 1, 0, values(4, 8))
        await sink.step()
        await sink.step()
        assert consumer.commits == []
        assert consumer.paused_tps == consumer.assigned  # two batches wait: stop fetching
        writer.go.set()
        await sink.settle()
        assert consumer.committed_offset(ENRICHED, 0) == 4
        for _ in range(3):
            await sink.step()
            await sink.settle()
        assert not consumer.paused_tps

    asyncio.run(go())
    assert consumer.committed_offset(ENRICHED, 0) == 8
    assert consumer.committed_offset(ENRICHED, 1) == 4
    assert len(writer.tables["scans"]) == 12
