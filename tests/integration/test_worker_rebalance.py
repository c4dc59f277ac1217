"""Real workers (subprocesses) in one group on the real broker: a rebalance whose leader
does not know a table's changelog topic loses no scan, nor do records fetched and dropped
unprocessed from partitions the group never committed (`dropped_fetch_worker.py`), nor the
partitions of a worker killed before its first commit.

On a cluster of several brokers a topic Faust created a moment before the group formed can
be missing from the metadata the group leader got; Faust's assignor then leaves it out of
every assignment until that metadata is refreshed (minutes). The fault is injected here on
one broker by `stale_leader_worker.py`: the first worker's consumer does not see the
premises table's changelog while a file exists."""

from __future__ import annotations

import time
from pathlib import Path

from test_worker import place, scan
from worker_kit import Workers, publish, read_topic

from ingest.kafka_settings import KafkaSettings
from ingest.premises import encode_premises
from processors.records import decode_frame

MINUTE = 60_000
LAUNCHER = Path(__file__).with_name("stale_leader_worker.py")
DROPPER = Path(__file__).with_name("dropped_fetch_worker.py")


def _scans(first: int, n: int, now: int) -> list[tuple[bytes, bytes]]:
    return [
        (f"P{i % 200}".encode(), scan(f"e{i}", f"person{i}", f"P{i % 200}", now - MINUTE))
        for i in range(first, first + n)
    ]


def _log(workers: Workers, index: int) -> str:
    return workers.started[index][1].read_text(errors="replace")


def _wait_log(workers: Workers, index: int, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in _log(workers, index):
        assert time.monotonic() < deadline, f"no {text!r} in worker {index}'s log"
        assert workers.started[index][0].alive(), workers.logs()
        time.sleep(0.5)


def _wait_enriched(kafka: KafkaSettings, workers: Workers, n: int, timeout: float) -> set[str]:
    """The event ids in scans.enriched once `e0`..`e{n-1}` are all there; fails naming
    the missing ones (or a dead worker) after `timeout`."""
    expected = {f"e{i}" for i in range(n)}
    ids: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_topic(kafka, kafka.enriched)
        ids = {s.event_id for r in records for s in decode_frame(r.value or b"")}
        if expected <= ids:
            break
        assert all(w.alive() for w, _ in workers.started), workers.logs()
        time.sleep(1)
    missing = expected - ids
    assert not missing, f"{len(missing)} scans never enriched, e.g. {sorted(missing)[:5]}"
    return ids


def test_a_second_worker_joining_a_leader_that_lacks_a_changelog_loses_no_scan(
    kafka_settings: KafkaSettings, workers: Workers, tmp_path: Path
) -> None:
    """Guarantee: a worker never processes a partition without every table of it (here the
    premises registry), so no scan is parked against a registry it did not restore and
    committed; the leader refreshes its metadata and the group rebalances again, and every
    scan reaches scans.enriched."""
    kafka = kafka_settings
    now = int(time.time() * 1000)
    premises = [place(f"P{i}", f"D{i % 7}") for i in range(200)]
    publish(kafka, kafka.premises, [(p.premises_id.encode(), encode_premises(p)) for p in premises])
    publish(kafka, kafka.raw, _scans(0, 3000, now))
    stale = tmp_path / "stale"
    stale.touch()
    changelog = f"{kafka.topic_prefix}scantrace-worker-premises-changelog"
    options = {"session_timeout_seconds": 6, "expire_interval_seconds": 1}
    workers.start(argv=[str(LAUNCHER), changelog, str(stale)], data="data-1", **options)
    _wait_log(workers, 0, "processing partitions [", 90)
    workers.start(data="data-2", **options)
    _wait_log(workers, 1, "processing partitions [", 90)
    # The fault is in place: the leader assigned without the premises changelog.
    assert f"Ignoring missing topic: '{changelog}'" in _log(workers, 0)
    publish(kafka, kafka.raw, _scans(3000, 3000, now))
    time.sleep(5)  # the scans published since the second worker joined are read
    stale.unlink()  # the broker knows the topic from now on

    ids = _wait_enriched(kafka, workers, 6000, timeout=120)
    assert ids == {f"e{i}" for i in range(6000)}


def test_a_fetch_dropped_before_any_commit_is_read_again(
    kafka_settings: KafkaSettings, workers: Workers
) -> None:
    """Guarantee: records fetched but dropped unprocessed (as when a rebalance begins
    between a fetch and its processing) are read again from partitions the group never
    committed too (a fresh group here; in a cluster, the partitions of a worker that died
    before its first commit): every scan is enriched, none committed unprocessed, and the
    premises registry is read whole."""
    kafka = kafka_settings
    now = int(time.time() * 1000)
    premises = [place(f"P{i}", f"D{i % 7}") for i in range(200)]
    publish(kafka, kafka.premises, [(p.premises_id.encode(), encode_premises(p)) for p in premises])
    publish(kafka, kafka.raw, _scans(0, 2000, now))
    workers.start(argv=[str(DROPPER), kafka.raw], data="data-1", expire_interval_seconds=1)
    _wait_log(workers, 0, "processing partitions [", 90)
    publish(kafka, kafka.raw, _scans(2000, 1000, now))

    _wait_enriched(kafka, workers, 3000, timeout=90)
