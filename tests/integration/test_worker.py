"""The real worker (`python -m scantrace.cli worker` subprocesses) on the real broker:
exact outputs for a stream with every kind of trouble, and a SIGKILL mid-stream."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import msgpack
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from worker_kit import Workers, publish, read_topic, total

from ingest.deadletter import decode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from ingest.premises import Premises, encode_premises
from processors.records import decode_frame

MINUTE = 60_000


def scan(event_id: str, person: str, premises_id: str, scanned_at: int, **extra: Any) -> bytes:
    wire = {
        "event_id": event_id,
        "person_id": person,
        "premises_id": premises_id,
        "scanned_at": scanned_at,
        "kind": "checkin",
        "gateway_id": "gw-test",
        "received_at": int(time.time() * 1000),
        "schema": 1,
    }
    wire.update(extra)
    return msgpack.packb({k: v for k, v in wire.items() if v is not None})  # type: ignore[no-any-return]


def place(premises_id: str, district: str) -> Premises:
    return Premises(
        premises_id=premises_id, name=f"Place {premises_id}", category="market", district=district
    )


def balanced(samples: dict[str, float]) -> bool:
    """in == enriched + duplicates + repeats + dead-lettered + parked."""
    names = ("scans_enriched", "duplicates", "repeats", "dead_letters")
    out = sum(total(samples, f"scantrace_worker_{n}_total") for n in names)
    out += total(samples, "scantrace_worker_parked_scans")
    return total(samples, "scantrace_worker_events_in_total") == out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_troubled_stream_gives_exactly_the_expected_outputs(
    kafka_settings: KafkaSettings, workers: Workers, guarantee: str
) -> None:
    kafka = kafka_settings
    now = int(time.time() * 1000)
    t0 = now - 10 * MINUTE
    publish(kafka, kafka.premises, [(b"P1", encode_premises(place("P1", "Phan Rang")))])
    publish(kafka, kafka.premises, [(b"P2", encode_premises(place("P2", "Ninh Hai")))])
    raw = [
        (b"P1", scan("e1", "p1", "P1", t0)),
        (b"P1", scan("e1", "p1", "P1", t0)),  # duplicate
        (b"P1", scan("e2", "p1", "P1", t0 + MINUTE)),  # repeat: a double tap
        (b"P1", scan("e3", "p1", "P1", t0 + 2 * MINUTE, kind="checkout")),
        (b"P2", scan("e4", "p2", "P2", t0)),
        (b"U1", scan("e5", "p3", "U1", t0)),  # unknown, registered later
        (b"U2", scan("e6", "p4", "U2", t0)),  # unknown for good
        (b"P1", b"\xc1 not msgpack"),
        (b"P2", scan("e7", None, "P2", t0)),  # no person_id
        (b"P2", scan("e8", "p5", "P2", now + 24 * 60 * MINUTE)),  # from the future
        (b"P2", None),  # a tombstone on scans.raw
    ]
    publish(kafka, kafka.raw, raw)
    worker = workers.start(
        processing_guarantee=guarantee, core__park_timeout_ms=10_000, expire_interval_seconds=1
    )

    def settled(s: dict[str, float]) -> bool:
        return s.get("scantrace_worker_events_in_total") == len(raw) and (
            s.get("scantrace_worker_parked_scans") == 2
        )

    worker.wait_for(settled, 45, "all records read, two scans parked")
    publish(kafka, kafka.premises, [(b"U1", encode_premises(place("U1", "Ninh Son")))])
    samples = worker.wait_for(
        lambda s: (
            s.get("scantrace_worker_released_total") == 1
            and s.get('scantrace_worker_dead_letters_total{reason="unknown_premises"}') == 1
        ),
        30,
        "U1's scan released and U2's dead-lettered",
    )
    assert balanced(samples), samples
    assert samples["scantrace_worker_duplicates_total"] == 1
    assert samples["scantrace_worker_repeats_total"] == 1
    assert samples["scantrace_worker_parked_scans"] == 0
    assert samples['scantrace_worker_premises_records_total{result="upserted"}'] == 3
    assert worker.stop() == 0

    parts = list(range(kafka.partitions))
    committed = guarantee == "exactly_once"  # what a read_committed consumer sees
    enriched = read_topic(kafka, kafka.enriched, read_committed=committed)
    assert all(r.key is None for r in enriched)  # frames of scans (processors.records)
    got = sorted(
        ((s, r.partition) for r in enriched for s in decode_frame(r.value or b"")),
        key=lambda item: item[0].event_id,
    )
    assert [(s.event_id, s.kind, s.district, s.premises_id) for s, _ in got] == [
        ("e1", "checkin", "Phan Rang", "P1"),
        ("e3", "checkout", "Phan Rang", "P1"),
        ("e4", "checkin", "Ninh Hai", "P2"),
        ("e5", "checkin", "Ninh Son", "U1"),
    ]
    for s, partition in got:  # on the partition of its premises, as scans.raw
        assert partition == partition_for(s.premises_id.encode(), parts)
        assert s.premises_name == f"Place {s.premises_id}"

    letters = [
        (decode_dead_letter(r.value or b""), r.partition)
        for r in read_topic(kafka, kafka.dlq, read_committed=committed)
    ]
    assert sorted((dl.reason, dl.event_id) for dl, _ in letters) == [
        ("future_timestamp", "e8"),
        ("missing_field", "e7"),
        ("undecodable", ""),
        ("undecodable", ""),
        ("unknown_premises", "e6"),
    ]
    for dl, partition in letters:
        assert dl.stage == "worker" and dl.topic == kafka.raw
        assert partition == dl.partition  # on the partition of the record it stands for
    assert {dl.raw for dl, _ in letters if dl.reason == "undecodable"} == {b"\xc1 not msgpack", b""}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_killed_mid_stream_loses_nothing_and_keeps_its_dedup_state(
    kafka_settings: KafkaSettings, workers: Workers, guarantee: str
) -> None:
    kafka = kafka_settings
    n = 30_000
    now = int(time.time() * 1000)
    premises = [place(f"P{i}", f"D{i % 7}") for i in range(200)]
    publish(kafka, kafka.premises, [(p.premises_id.encode(), encode_premises(p)) for p in premises])
    raw = [
        (f"P{i % 200}".encode(), scan(f"e{i}", f"person{i}", f"P{i % 200}", now - MINUTE))
        for i in range(n)
    ]
    publish(kafka, kafka.raw, raw)
    expected = {f"e{i}" for i in range(n)}
    read_committed = guarantee == "exactly_once"

    # The killed worker stays in the group until its session times out (6 s, the least
    # the broker allows): then the second one gets the partitions.
    options = {"processing_guarantee": guarantee, "session_timeout_seconds": 6}
    first = workers.start(batch_max_records=2000, **options)
    at_kill = first.wait_for(
        lambda s: s.get("scantrace_worker_events_in_total", 0) >= 4000, 45, "4000 records read"
    )
    first.kill()
    assert at_kill["scantrace_worker_events_in_total"] < n, "the worker finished before the kill"
    # The scans waited for the premises registry instead of parking until it was read.
    assert at_kill.get("scantrace_worker_released_total", 0) == 0

    second = workers.start(**options)
    deadline = time.monotonic() + 45
    ids: Counter[str] = Counter()
    while time.monotonic() < deadline:
        records = read_topic(kafka, kafka.enriched, read_committed=read_committed)
        ids = Counter(s.event_id for r in records for s in decode_frame(r.value or b""))
        if expected <= set(ids):
            break
        assert second.alive(), workers.logs()
        time.sleep(1)
    missing = expected - set(ids)
    assert not missing, (
        f"{len(missing)} scans never enriched, e.g. {sorted(missing)[:5]}; {second.metrics()}"
    )
    assert set(ids) == expected
    if guarantee == "exactly_once":
        doubled = [e for e, count in ids.items() if count > 1]
        assert not doubled, f"{len(doubled)} scans enriched twice, e.g. {doubled[:5]}"

    # Dedup state came back from the changelog: an old scan sent again is a duplicate.
    before = second.wait_for(balanced, 20, "the accounting to balance")
    dup_before = before.get("scantrace_worker_duplicates_total", 0)
    in_before = before["scantrace_worker_events_in_total"]
    publish(kafka, kafka.raw, [raw[0]])
    after = second.wait_for(
        lambda s: s["scantrace_worker_events_in_total"] == in_before + 1, 20, "the resent scan"
    )
    assert after["scantrace_worker_duplicates_total"] == dup_before + 1
    assert balanced(after), after
    time.sleep(3.5)  # past a commit interval: a transaction holding it would be visible
    records = read_topic(kafka, kafka.enriched, read_committed=read_committed)
    resent = sum(1 for r in records for s in decode_frame(r.value or b"") if s.event_id == "e0")
    assert resent == ids["e0"]
    assert second.stop() == 0
    # ... from a changelog of batch records that Kafka forgets by age, not by key
    configs = topic_configs(kafka, f"{kafka.topic_prefix}scantrace-worker-seen-changelog")
    assert (configs["cleanup.policy"], configs["retention.ms"]) == ("delete", str(2 * 86_400_000))


def topic_configs(kafka: KafkaSettings, topic: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=kafka.servers())
    try:
        response = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    return {name: entry["value"] for name, entry in response["topic"][topic].items()}
