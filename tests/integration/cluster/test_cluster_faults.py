"""The rest of the fault matrix (`make faults`; `-m faults`): a sink, a gateway with
requests in flight, a ClickHouse shard for 60 s, a single-node ClickHouse for 10 minutes,
and every process at once (a power cut), each under a stream of scans, compared exactly
with what the gateways acknowledged (`faultkit.assert_exactly_once`).

The CI cases (a Kafka node, a worker) are in test_cluster_faults_ci.py."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from faultkit import (
    Cluster,
    Stream,
    check_exactly_once,
    rss_mib,
    single_database,
    start_pipeline,
    wait,
)

from scantrace.services import clickhouse_local
from scantrace.services.process import alive, free_port, stop, wait_until
from scantrace.topics import describe
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect

pytestmark = pytest.mark.faults


@pytest.mark.timeout(1500)
def test_killing_one_of_two_sinks_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """Guarantee: a sink SIGKILLed between an insert and its offset commit leaves its
    partitions to the other sink, which inserts those batches again; the insert tokens and
    ReplacingMergeTree make that harmless: every acknowledged scan is stored exactly once
    after merges, no double tap is stored, every dead letter is there."""
    run, premises = start_pipeline(cluster, tmp_path, restart_delay=20.0)
    stream = Stream(run.urls, premises).start()
    try:
        wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
        run.kill_in_group("sink-2", "sink")
    finally:
        stream.stop()
    check_exactly_once(run, stream.ledger, cluster)


@pytest.mark.timeout(1500)
def test_killing_a_gateway_with_requests_in_flight_loses_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: a gateway answers only after Kafka acknowledged every scan of a request,
    so a request cut by the gateway's SIGKILL was either acknowledged or is sent again
    by the client (to the other gateway) and deduplicated: a client that retries what
    was not acknowledged loses nothing, and nothing is stored twice after merges."""
    run, premises = start_pipeline(cluster, tmp_path, gateways=2, restart_delay=10.0)
    stream = Stream(run.urls, premises, senders=4, rate=3.0).start()
    try:
        wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
        deadline = time.monotonic() + 60
        while stream.inflight < 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # a request takes milliseconds: catch one in flight
        run.kill_child("gateway-2")
        time.sleep(20)
        wait(lambda: run.children()["gateway-2"]["restarts"] == 1, 120, "gateway restarted")
        time.sleep(10)
    finally:
        stream.stop()
    # Requests were cut: the client had to send some again.
    assert stream.ledger.retries > 0, stream.ledger
    check_exactly_once(run, stream.ledger, cluster)


@pytest.mark.timeout(1500)
def test_a_clickhouse_shard_down_for_a_minute_loses_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: while a shard is down the sinks' inserts through the Distributed table
    fail (they wait for every shard) and are retried, their offsets not committed, and
    Kafka keeps the scans; when the shard is back everything lands: every acknowledged
    scan stored exactly once after merges, no double tap, every dead letter there."""
    run, premises = start_pipeline(cluster, tmp_path)
    stream = Stream(run.urls, premises).start()
    try:
        wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
        shard = cluster.status()["clickhouse_shards"][1]
        os.kill(int(shard["pid"]), signal.SIGKILL)
        wait(lambda: not alive(int(shard["pid"])), 30, "the shard gone")
        time.sleep(60)
        assert "clickhouse shard 2" in cluster.revive()
        time.sleep(20)
    finally:
        stream.stop()
    check_exactly_once(run, stream.ledger, cluster)


@pytest.mark.timeout(2400)
def test_single_clickhouse_down_ten_minutes_sink_memory_flat_everything_lands(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: with the only ClickHouse down for 10 minutes under a steady stream, the
    sink stops reading what it cannot write (its resident memory stays flat while its lag
    grows: Kafka holds the backlog, not the sink) and does not die; when ClickHouse is back
    everything lands, exactly once after merges."""
    ports = (free_port(), free_port())
    home = tmp_path / "single"
    record = clickhouse_local.start(home, ports, name="clickhouse")
    pid = int(record["pid"])  # type: ignore[call-overload]

    def up() -> bool:
        client = connect(ClickHouseSettings(url=f"clickhouse://127.0.0.1:{ports[0]}/default"))
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        finally:
            client.disconnect()

    try:
        wait_until(up, pid=pid, log=Path(str(record["log"])), what="ClickHouse", timeout=120)
        ch = single_database(ports[0], f"f_{uuid.uuid4().hex[:10]}")
        run, premises = start_pipeline(cluster, tmp_path, ch, workers=1, sinks=1)
        stream = Stream(run.urls, premises, rate=1.0).start()
        samples: list[tuple[float, float, int, int]] = []
        try:
            wait(lambda: stream.acknowledged() >= 10, 120, "scans flowing")
            sink_pid = int(run.children()["sink"]["pid"])
            os.kill(pid, signal.SIGKILL)
            down_at = time.monotonic()
            while time.monotonic() - down_at < 600:
                lag = describe(run.kafka, {"sink": (run.sink_group, [run.kafka.enriched])})
                samples.append(
                    (
                        time.monotonic() - down_at,
                        rss_mib(sink_pid),
                        lag.lags[0].lag,
                        stream.acknowledged() * stream.batch,
                    )
                )
                time.sleep(20)
            record = clickhouse_local.start(home, ports, name="clickhouse")
            pid = int(record["pid"])  # type: ignore[call-overload]
            wait_until(up, pid=pid, log=Path(str(record["log"])), what="ClickHouse", timeout=120)
            assert int(run.children()["sink"]["pid"]) == sink_pid, "the sink died"
            time.sleep(10)
        finally:
            stream.stop()
        settled = [s for s in samples if s[0] >= 120]  # after its buffers filled
        rss = [s[1] for s in settled]
        lags = [s[2] for s in settled]
        # Kafka held a growing backlog: the sink's lag (in records of scans.enriched,
        # frames of many scans each) never shrank while the gateways went on acknowledging
        # tens of thousands of scans (batches of `stream.batch`).
        assert lags == sorted(lags) and lags[-1] > lags[0], samples
        assert settled[-1][3] - settled[0][3] > 10_000, samples
        assert max(rss) - min(rss) < 64, samples  # MiB: flat, not growing with it
        check_exactly_once(run, stream.ledger)
    finally:
        stop(pid, "scantrace.services.chserver")


@pytest.mark.timeout(2400)
def test_a_power_cut_of_every_process_loses_nothing_acknowledged(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Guarantee: SIGKILL of every process at once (three Kafka nodes, both ClickHouse
    shards, the supervisor with every worker, sink and gateway) loses no acknowledged
    scan: what a gateway acknowledged was written to two brokers' logs (the page cache
    survives a process kill; an operating system crash needs replicas in separate
    failure domains), the consumers resume from their committed offsets, and after
    `services up` and `run` again every acknowledged scan is stored exactly once after
    merges, the client having sent again what was cut."""
    run, premises = start_pipeline(cluster, tmp_path)
    stream = Stream(run.urls, premises).start()
    try:
        wait(lambda: stream.acknowledged() >= 20, 120, "scans flowing")
        status = cluster.status()
        pids = [int(n["pid"]) for n in status["kafka_nodes"]] + [
            int(s["pid"]) for s in status["clickhouse_shards"]
        ]
        os.killpg(run.pid, signal.SIGKILL)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in [*pids, run.pid]:
            wait(lambda pid=pid: not alive(pid), 30, f"{pid} gone")  # type: ignore[misc]
        time.sleep(10)
        started = cluster.revive()
        assert len(started) == 5, started
        run.start()
        time.sleep(30)
    finally:
        stream.stop()
    check_exactly_once(run, stream.ledger, cluster)
