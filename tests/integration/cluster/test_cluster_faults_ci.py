"""The fault matrix's cases that CI runs: a Kafka node and a worker die under a stream of
scans, on `services up --brokers 3 --clickhouse-shards 2` with `run --workers 2 --sinks 2`.

Each test keeps scans flowing through the fault and compares, exactly, what ClickHouse
holds with what the gateway acknowledged (`faultkit.assert_exactly_once`)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from faultkit import (
    Cluster,
    Stream,
    check_exactly_once,
    leader_counts,
    start_pipeline,
    wait,
)

from scantrace.services.process import alive


@pytest.mark.timeout(1200)
def test_killing_the_kafka_node_that_leads_most_partitions_loses_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: a scan the gateway acknowledged (acks=all, min.insync.replicas 2 of 3)
    survives the SIGKILL of the broker leading most `scans.raw` partitions; it stays down
    30 s while scans keep coming (the other two elect leaders and take the writes), comes
    back and catches up; every acknowledged scan is stored exactly once after merges, no
    double tap is stored, every dead letter is there."""
    run, premises = start_pipeline(cluster, tmp_path)
    stream = Stream(run.urls, premises).start()
    try:
        wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
        counts = leader_counts(run.kafka)
        victim = max(counts, key=lambda node: counts[node])
        pid = cluster.node_pid(victim)
        os.kill(pid, signal.SIGKILL)
        wait(lambda: not alive(pid), 30, "the broker gone")
        before = stream.acknowledged()
        time.sleep(30)
        # Writes went on without it: the gateway acknowledged scans while it was down.
        assert stream.acknowledged() > before
        assert f"kafka node {victim}" in cluster.revive()
        cluster.wait_in_sync(run.kafka)
        time.sleep(10)
    finally:
        ledger = stream.stop()
    check_exactly_once(run, ledger, cluster)


@pytest.mark.timeout(1200)
def test_killing_one_of_two_workers_moves_its_partitions_and_loses_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: when one of two workers of the consumer group is SIGKILLed mid-stream,
    the other takes its partitions (after the session timeout) and the supervisor starts
    it again after its delay, counted; the scans it had read but not committed are read
    again, and the stream's and the store's dedup by event id keep every acknowledged scan
    stored exactly once after merges, no double tap stored."""
    run, premises = start_pipeline(cluster, tmp_path, restart_delay=20.0)
    stream = Stream(run.urls, premises).start()
    try:
        wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
        run.kill_in_group("worker-2", "worker")
    finally:
        ledger = stream.stop()
    check_exactly_once(run, ledger, cluster)
