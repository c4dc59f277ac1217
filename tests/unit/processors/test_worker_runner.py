"""The worker's per-partition runner: the core over partition views, guarded, into
Kafka messages, with the accounting identity on the metrics."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import msgpack
from processors_testkit import DAY, HOUR, MINUTE, NOW, pack, premises, wire
from prometheus_client import CollectorRegistry

from ingest.deadletter import DeadLetter, decode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, encode_premises
from ingest.wire import raw_frames
from processors.core import ProcessorCore, Result
from processors.horizon import HorizonMap, hash_keys
from processors.metrics import WorkerMetrics
from processors.records import FRAME_MAX_ROWS, EnrichedScan, RawRecord, decode_frame, frame_rows
from processors.runner import HORIZON, HORIZON_WIDTHS, TABLES, BatchRunner, Outbox, StaticTableRef
from processors.settings import ProcessorSettings
from processors.state import ParkedScan, repeat_key
from processors.tables import (
    BATCH_KEY_PREFIX,
    HORIZON_MAGIC,
    apply_horizon_record,
    apply_record,
    decode_value,
    encode_value,
)

KAFKA = KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="t.")
PART = 3


class DictStore:
    def __init__(self, width: int = 0) -> None:
        self.width = width  # of a horizon table's maps; 0: dicts
        self.parts: dict[int, Any] = {}

    def partition(self, partition: int) -> Any:
        if partition not in self.parts:
            self.parts[partition] = HorizonMap(self.width) if self.width else {}
        return self.parts[partition]

    def entries(self) -> int:
        return sum(len(p) for p in self.parts.values())


def hk(key: str) -> tuple[int, int]:
    """A key's hash as a horizon map holds it."""
    k0, k1 = hash_keys([key])[0].tolist()
    return (k0, k1)


@dataclass(frozen=True)
class KeyedRecord:
    key: bytes | None
    value: bytes | None
    topic: str = "t.premises"
    partition: int = PART
    offset: int = 0


class Feed:
    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, value: bytes | None) -> RawRecord:
        self.offset += 1
        return RawRecord(value, "t.scans.raw", PART, self.offset)

    def scan(self, event_id: str, **overrides: Any) -> RawRecord:
        return self(pack(wire(event_id, received_at=NOW - MINUTE, **overrides)))


def entries(out: Outbox, table: str) -> dict[Any, Any]:
    """The state changes an outbox carries for a table's changelog: by key (None: deleted)
    for a dict table, by key hash (`hk`) for a horizon table."""
    changes: dict[Any, Any] = {}
    for key, value in out.changelog.get((f"t.app-{table}-changelog", PART), []):
        if value is not None and value.startswith(HORIZON_MAGIC):
            replay = HorizonMap(HORIZON_WIDTHS[table])
            apply_horizon_record(replay, key or b"", value)
            keys, values = replay.table[:, :2], replay.table[:, 2:]
            held = keys[:, 1] != 0
            changes.update(zip(map(tuple, keys[held].tolist()), values[held].tolist(), strict=True))
        elif key is not None:
            changes[key.decode()] = None if value is None else decode_value(value)
    return changes


def make_runner(
    metrics: WorkerMetrics | None = None, core_factory: Any = ProcessorCore, **settings: int
) -> tuple[BatchRunner, dict[str, DictStore]]:
    stores = {name: DictStore(HORIZON_WIDTHS.get(name, 0)) for name in TABLES}
    refs = {name: StaticTableRef(name, s, f"t.app-{name}-changelog") for name, s in stores.items()}
    runner = BatchRunner(
        ProcessorSettings(**settings), KAFKA, refs, metrics, core_factory=core_factory
    )
    return runner, stores


def live_entries(part: HorizonMap) -> dict[tuple[int, ...], tuple[int, ...]]:
    """A horizon map's entries at or after its cutoff: key hash -> values."""
    table = part.table
    held = (table[:, 1] != 0) & (table[:, 2] >= part.cutoff)
    return {tuple(r[:2]): tuple(r[2:]) for r in table[held].tolist()}


def register(runner: BatchRunner, *known: Premises, now: int = NOW - DAY) -> Outbox:
    out = Outbox()
    records = [KeyedRecord(p.premises_id.encode(), encode_premises(p)) for p in known]
    runner.premises(PART, records, now, out)
    return out


def enriched(out: Outbox) -> list[EnrichedScan]:
    frames = out.outputs.get((KAFKA.enriched, PART), [])
    return [scan for _, v in frames for scan in decode_frame(v or b"")]


def letters(out: Outbox) -> list[DeadLetter]:
    return [decode_dead_letter(v or b"") for _, v in out.outputs.get((KAFKA.dlq, PART), [])]


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def total(metrics: WorkerMetrics, name: str) -> float:
    """A metric summed over its labels."""
    samples = (s for m in metrics.registry.collect() for s in m.samples)
    return sum(s.value for s in samples if s.name == name)


def identity(metrics: WorkerMetrics) -> tuple[float, float]:
    """(events in, enriched + duplicates + repeats + dead-lettered + parked)."""
    out = (
        total(metrics, "scantrace_worker_scans_enriched_total")
        + total(metrics, "scantrace_worker_duplicates_total")
        + total(metrics, "scantrace_worker_repeats_total")
        + total(metrics, "scantrace_worker_dead_letters_total")
        + total(metrics, "scantrace_worker_parked_scans")
    )
    return total(metrics, "scantrace_worker_events_in_total"), out


@dataclass(frozen=True)
class LeanRecord:
    """What aiokafka's C record gives the worker (ingest.lean_records): no topic, no
    partition."""

    offset: int
    value: bytes | None
    key: bytes | None = None


def test_lean_records_take_their_topic_and_partition_from_the_batch() -> None:
    runner, stores = make_runner()
    register(runner, premises("P1"))
    feed = Feed()
    records = [
        LeanRecord(7, feed.scan("e1").value),
        LeanRecord(8, b"\xc1garbage"),
        LeanRecord(9, feed.scan("e2", premises_id="U1").value),
    ]
    out = Outbox()
    runner.scans(PART, records, NOW, out)  # type: ignore[arg-type]
    assert [s.event_id for s in enriched(out)] == ["e1"]
    [dl] = letters(out)
    assert (dl.topic, dl.partition, dl.offset) == (KAFKA.raw, PART, 8)
    [parked] = stores["parked"].parts[PART]["U1"]
    assert ParkedScan.from_list("U1", parked).topic == KAFKA.raw
    assert (parked[2], parked[3]) == (PART, 9)


def test_outputs_go_to_the_input_partition_as_frames_and_event_id_keyed_letters() -> None:
    runner, stores = make_runner()
    register(runner, premises("P1"))
    feed = Feed()
    out = Outbox()
    runner.scans(PART, [feed.scan("e1"), feed.scan("e1"), feed(b"\xc1garbage")], NOW, out)

    [(key, _)] = out.outputs[(KAFKA.enriched, PART)]  # one frame, no key
    assert key is None
    assert [(s.event_id, s.premises_name) for s in enriched(out)] == [("e1", "Cho Phan Rang")]
    [dl] = letters(out)
    assert (dl.reason, dl.raw, dl.partition, dl.offset) == ("undecodable", b"\xc1garbage", PART, 3)
    assert out.outputs[(KAFKA.dlq, PART)][0][0] is None  # no event id, no key
    assert out.partitions() == {PART}
    # The state changes, for the changelogs, on the same partition.
    assert entries(out, "seen") == {hk("e1"): [NOW - MINUTE]}
    [(key, _)] = out.changelog[("t.app-seen-changelog", PART)]  # one record for the batch
    assert key[:1] == BATCH_KEY_PREFIX
    assert entries(out, "last_kept") == {
        hk(repeat_key("p1", "P1", "checkin")): [NOW - MINUTE, NOW - 10 * MINUTE]
    }
    assert stores["seen"].parts[PART].get("e1") == (NOW - MINUTE,)
    assert len(stores["seen"].parts[PART]) == 1


def test_a_dead_letter_with_an_event_id_is_keyed_by_it() -> None:
    runner, _ = make_runner()
    feed = Feed()
    out = Outbox()
    runner.scans(PART, [feed.scan("e9", scanned_at=NOW + DAY)], NOW, out)
    [(key, _)] = out.outputs[(KAFKA.dlq, PART)]
    assert key == b"e9"
    assert letters(out)[0].reason == "future_timestamp"


def test_a_batch_goes_out_as_frames_of_at_most_frame_max_rows() -> None:
    runner, _ = make_runner()
    register(runner, premises("P1"))
    out = Outbox()
    feed = Feed()
    n = FRAME_MAX_ROWS + 5
    runner.scans(PART, [feed.scan(f"e{i}", person_id=f"p{i}") for i in range(n)], NOW, out)
    frames = [value or b"" for _, value in out.outputs[(KAFKA.enriched, PART)]]
    assert [frame_rows(f) for f in frames] == [FRAME_MAX_ROWS, 5]
    assert [s.event_id for s in enriched(out)] == [f"e{i}" for i in range(n)]


def test_parked_scans_come_out_when_their_premises_arrives() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    runner, stores = make_runner(metrics)
    feed = Feed()
    out = Outbox()
    runner.scans(
        PART,
        [feed.scan("e1", premises_id="U1"), feed.scan("e2", premises_id="U1", person_id="p2")],
        NOW,
        out,
    )
    assert not out.outputs and runner.parked_now() == 2
    assert sample(metrics, "scantrace_worker_parked_scans") == 2

    out = register(runner, premises("U1", district="Ninh Hai"), now=NOW + MINUTE)
    assert [s.event_id for s in enriched(out)] == ["e1", "e2"]
    assert {s.district for s in enriched(out)} == {"Ninh Hai"}
    assert sample(metrics, "scantrace_worker_released_total") == 2
    assert sample(metrics, "scantrace_worker_parked_scans") == 0 == runner.parked_now()
    assert sample(metrics, "scantrace_worker_scans_enriched_total", district="Ninh Hai") == 2
    assert dict(out.changelog[("t.app-parked-changelog", PART)]) == {b"U1": None}
    assert sample(metrics, "scantrace_worker_premises_records_total", result="upserted") == 1
    assert "U1" in stores["premises"].parts[PART]


def test_a_premises_tombstone_forgets_it() -> None:
    runner, stores = make_runner()
    register(runner, premises("P1"))
    out = Outbox()
    runner.premises(PART, [KeyedRecord(b"P1", None)], NOW, out)
    assert stores["premises"].parts[PART] == {}
    assert dict(out.changelog[("t.app-premises-changelog", PART)]) == {b"P1": None}
    assert runner.premises_results == {"upserted": 1, "deleted": 1}


def test_bad_premises_records_are_dead_lettered_and_change_nothing() -> None:
    runner, stores = make_runner()
    good = encode_premises(premises("P1"))
    bad_types = msgpack.packb({**premises("P2").to_wire(), "district": 7})
    out = Outbox()
    records = [
        KeyedRecord(b"P1", b"\xc1"),
        KeyedRecord(b"P9", good),  # key is not the id: it chose the wrong partition
        KeyedRecord(b"P2", bad_types),
        KeyedRecord(b"P2", msgpack.packb({"premises_id": "P2", "colour": "red"})),
        KeyedRecord(None, None),
    ]
    runner.premises(PART, records, NOW, out)
    assert [dl.reason for dl in letters(out)] == ["invalid_premises"] * 4
    assert "is not the premises_id" in letters(out)[1].detail
    assert not out.changelog and stores["premises"].entries() == 0
    assert runner.premises_results == {"invalid_premises": 5}


class BuggyCore(ProcessorCore):
    """Raises on any batch holding a record whose bytes contain b'boom', after the records
    before it have changed the state (as a bug half-way through a batch would)."""

    def process(self, records: Any, now_ms: int, source: Any = None) -> Result:
        records = list(records)
        for i, rec in enumerate(records):
            if rec.value and b"boom" in rec.value:
                super().process(records[:i], now_ms, source)
                raise RuntimeError("boom in the core")
        return super().process(records, now_ms, source)


def test_a_core_bug_dead_letters_only_the_record_that_triggers_it() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    runner, stores = make_runner(metrics, core_factory=BuggyCore)
    register(runner, premises("P1"))
    feed = Feed()
    records = [
        feed.scan("e1", person_id="a"),
        feed.scan("e2", person_id="boom"),
        feed.scan("e3", person_id="c"),
        feed.scan("e1", person_id="a"),
    ]
    out = Outbox()
    runner.scans(PART, records, NOW, out)

    # e1 went through the failed attempt first: rolled back, it is not its own duplicate.
    assert [s.event_id for s in enriched(out)] == ["e1", "e3"]
    [dl] = letters(out)
    assert (dl.stage, dl.reason, dl.offset) == ("worker", "exception", 2)
    assert dl.detail.startswith("RuntimeError: boom in the core at process (")
    assert dl.raw == records[1].value
    seen = stores["seen"].parts[PART]
    assert len(seen) == 2 and seen.get("e1") and seen.get("e3")
    assert sample(metrics, "scantrace_worker_duplicates_total") == 1
    assert sample(metrics, "scantrace_worker_dead_letters_total", reason="exception") == 1
    assert identity(metrics) == (4, 4)
    assert set(entries(out, "seen")) == {hk("e1"), hk("e3")}


def test_a_core_bug_on_one_scan_of_a_frame_dead_letters_that_scan_only() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    runner, _ = make_runner(metrics, core_factory=BuggyCore)
    register(runner, premises("P1"))
    feed = Feed()
    values = [pack(wire(e, person_id=p, received_at=NOW - MINUTE)) for e, p in
              (("e1", "a"), ("e2", "boom"), ("e3", "c"))]  # fmt: skip
    [(_, frame)] = raw_frames(values)
    framed = feed(frame)
    out = Outbox()
    runner.scans(PART, [framed, feed.scan("e4", person_id="d")], NOW, out)
    assert [s.event_id for s in enriched(out)] == ["e1", "e3", "e4"]
    [dl] = letters(out)
    assert (dl.reason, dl.raw, dl.offset) == ("exception", values[1], framed.offset)
    assert identity(metrics) == (4, 4)


def test_expire_dead_letters_old_parked_scans_and_drops_old_dedup_memory() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    runner, stores = make_runner(metrics, park_timeout_ms=HOUR, dedup_horizon_ms=2 * HOUR)
    register(runner, premises("P1"))
    feed = Feed()
    runner.scans(PART, [feed.scan("e1"), feed.scan("e2", premises_id="U9")], NOW, Outbox())
    out = Outbox()
    runner.expire(PART, NOW + 3 * HOUR, out)
    [dl] = letters(out)
    assert (dl.reason, dl.event_id) == ("unknown_premises", "e2")
    assert len(stores["seen"].parts[PART]) == 0 and stores["parked"].parts[PART] == {}
    assert entries(out, "seen") == {}  # what is past the horizon needs no changelog record
    assert identity(metrics) == (2, 2)


def test_a_dead_letter_too_big_for_kafka_carries_its_raw_bytes_cut() -> None:
    runner, _ = make_runner()
    runner.max_record_bytes = 10_000
    out = Outbox()
    runner.scans(PART, [Feed()(b"\xc1" + b"x" * 50_000)], NOW, out)
    [(_, value)] = out.outputs[(KAFKA.dlq, PART)]
    assert value is not None and len(value) <= 10_000
    assert "raw cut from 50001" in decode_dead_letter(value).detail


def test_accounting_identity_and_recovered_state_over_a_mixed_stream() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    runner, stores = make_runner(metrics, park_timeout_ms=HOUR)
    first = register(runner, *(premises(f"P{i}") for i in range(5)))
    rng = random.Random(4)
    feed = Feed()
    changelog: list[tuple[str, bytes, bytes | None]] = [
        (topic, k or b"", v) for (topic, _), msgs in first.changelog.items() for k, v in msgs
    ]
    sent: list[RawRecord] = []
    now = NOW
    for batch in range(30):
        records = []
        for _ in range(50):
            roll = rng.random()
            if roll < 0.1 and sent:
                records.append(feed(rng.choice(sent).value))
                continue
            rec = feed.scan(
                f"e{rng.getrandbits(32)}",
                person_id=f"p{rng.randrange(20)}",
                premises_id=f"P{rng.randrange(7)}",  # P5, P6 unknown
                scanned_at=now - rng.randrange(HOUR),
                kind=rng.choice(["checkin", "checkout"]),
            )
            records.append(rec if roll > 0.02 else feed(b"\x00bad"))
            sent.append(rec)
        out = Outbox()
        runner.scans(PART, records, now, out)
        if batch == 20:
            runner.premises(PART, [KeyedRecord(b"P5", encode_premises(premises("P5")))], now, out)
        if batch % 7 == 0:
            runner.expire(PART, now, out)
        for (topic, _), msgs in out.changelog.items():
            changelog.extend((topic, k or b"", v) for k, v in msgs)
        now += 10 * MINUTE

    events_in, accounted = identity(metrics)
    assert events_in == 1500 and accounted == events_in
    assert sample(metrics, "scantrace_worker_parked_scans") == runner.parked_now() > 0
    assert sample(metrics, "scantrace_worker_dead_letters_total", reason="unknown_premises") > 0
    assert sample(metrics, "scantrace_worker_released_total") > 0
    assert metrics.event_time_lag.count() == total(metrics, "scantrace_worker_scans_enriched_total")
    # Replaying the changelog records in order rebuilds every table as it is.
    replayed: dict[str, Any] = {
        name: HorizonMap(HORIZON_WIDTHS[name]) if name in HORIZON else {} for name in TABLES
    }
    for topic, key, value in changelog:
        name = topic.removeprefix("t.app-").removesuffix("-changelog")
        apply = apply_horizon_record if name in HORIZON else apply_record
        apply(replayed[name], key, value)
    live = {name: stores[name].parts[PART] for name in TABLES}
    for name in HORIZON:  # the same entries, and the same values for each
        replayed[name].expire(live[name].cutoff)
        assert live_entries(replayed[name]) == live_entries(live[name])
    normalized = {
        name: {k: decode_value(encode_value(v)) for k, v in live[name].items()}
        for name in TABLES
        if name not in HORIZON
    }
    assert {name: replayed[name] for name in normalized} == normalized
