"""Sink throughput: rows/s from scans.enriched into ClickHouse, one `scantrace sink` process.

For each run, on topics and a database of its own: publishes N enriched scans (3,000
premises, 200,000 persons, times over the last day) as the worker writes them: frames of
up to `--frame-rows` scans of one partition (`processors.records`; `--frame-rows 1`: one
msgpack map per record keyed by premises_id, what earlier workers wrote), then starts
`scantrace sink` as a child process and times until ClickHouse holds all N rows. Reports
the rate from process start (imports, group join included) and from the first stored row
(the steady rate), the sink's CPU time per row, and the median of the runs. Publishing is not timed.

    scantrace services up --kafka apache
    python -m bench sink [--scans 1000000] [--runs 3] [--batch-rows 50000] [--sinks 1]
                         [--frame-rows 1000]

BENCH_PROFILE=FILE writes a cProfile of the sink's main thread (fetching) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from bench.common import (
    BENCH_PERSON_HASH_KEY,
    cpu_seconds,
    delete_topics,
    endpoints,
)
from ingest.admin import ensure_topics
from ingest.batch_send import send_in_batches
from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from processors.records import FRAME_MAX_ROWS, EnrichedRow, encode_frames, encode_row
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate

CATEGORIES = ("market", "school", "office", "shop", "supermarket", "restaurant")


Record = tuple[int, bytes | None, bytes]  # partition, key, value


def make_values(n: int, seed: int, partitions: int, frame_rows: int) -> list[Record]:
    """The scans as records: frames of up to `frame_rows` rows per partition, in order."""
    by_partition: dict[int, list[EnrichedRow]] = {}
    for key, row in make_rows(n, seed):
        by_partition.setdefault(partition_for(key, list(range(partitions))), []).append(row)
    out: list[Record] = []
    for p, rows in sorted(by_partition.items()):
        if frame_rows == 1:
            out += [(p, row[2].encode(), encode_row(row)) for row in rows]
            continue
        for i in range(0, len(rows), frame_rows):
            out += [(p, None, f) for f in encode_frames(rows[i : i + frame_rows], 1_000_000)]
    return out


def make_rows(n: int, seed: int) -> list[tuple[bytes, EnrichedRow]]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    out = []
    for i in range(n):
        p = rng.randrange(3000)
        premises = f"NT-{p:06d}"
        category = CATEGORIES[p % len(CATEGORIES)]
        t = now - rng.randrange(86_400_000)
        row = (
            f"{rng.getrandbits(128):032x}",
            f"P{rng.randrange(200_000):07d}",
            premises,
            t,
            "checkout" if i % 5 == 0 else "checkin",
            f"gw-{p % 7}",
            t + rng.randrange(2000),
            1,
            f"Premises {p}",
            category,
            f"District {p % 7}",
            f"Ward {p % 60}",
            f"Agency {p % 25}",
            45,
            t + 3000,
        )
        out.append((premises.encode(), row))
    return out


async def _publish(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        max_batch_size=1024 * 1024,
        linger_ms=5,
        max_request_size=2 * 1024 * 1024,
    )
    await producer.start()
    try:
        by_partition: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
        for p, key, value in records:
            by_partition.setdefault((topic, p), []).append((key, value))
        await asyncio.gather(*await send_in_batches(producer, by_partition))
    finally:
        await producer.stop()


def one_run(
    bootstrap: str,
    ch_url: str,
    values: list[Record],
    rows: int,
    batch_rows: int,
    sinks: int = 1,
    partitions: int = 4,
) -> dict[str, float]:
    n = rows
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"bench{tag}.", partitions=partitions)
    ensure_topics(kafka)
    clickhouse = ClickHouseSettings(url=f"{ch_url}/bench_{tag}")
    migrate(clickhouse)
    t = time.perf_counter()
    asyncio.run(_publish(bootstrap, kafka.enriched, values))
    print(f"  published {n:,} in {time.perf_counter() - t:.1f} s", flush=True)
    env = {
        **os.environ,
        "SCANTRACE_KAFKA__BOOTSTRAP": bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "SCANTRACE_KAFKA__PARTITIONS": str(kafka.partitions),
        "SCANTRACE_CLICKHOUSE__URL": clickhouse.url,
        "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": BENCH_PERSON_HASH_KEY,
        "SCANTRACE_SINK__GROUP_ID": f"bench-sink-{tag}",
        "SCANTRACE_SINK__BATCH_ROWS": str(batch_rows),
    }
    client = connect(clickhouse)
    start = time.perf_counter()
    profile = (
        ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
        if os.environ.get("BENCH_PROFILE")
        else []
    )
    argv = [sys.executable, *profile, "-m", "scantrace.cli", "sink", "--log-level", "warning"]
    # Several processes share the partitions as one consumer group (how the sink scales).
    procs = [subprocess.Popen(argv, env=env) for _ in range(sinks)]
    first = done = 0.0
    cpu = 0.0
    try:
        while True:
            stored = client.execute("SELECT count() FROM scans")[0][0]
            now = time.perf_counter()
            if stored and not first:
                first = now
            if stored >= n:
                done = now
                cpu = sum(cpu_seconds(p.pid) for p in procs)
                break
            for proc in procs:
                if proc.poll() is not None:
                    sys.exit(f"a sink exited with {proc.returncode}")
            if now - start > 900:
                sys.exit(f"timeout: {stored:,} of {n:,} stored")
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        client.execute(f"DROP DATABASE IF EXISTS `{clickhouse.database}`")
        client.disconnect()
        delete_topics(kafka)
    return {
        "from_start_rows_s": n / (done - start),
        "steady_rows_s": n / (done - first),
        "seconds": done - start,
        "cpu_us_per_row": cpu * 1e6 / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--sinks", type=int, default=1, help="sink processes (one group)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--frame-rows", type=int, default=FRAME_MAX_ROWS, help="scans per record (1: no frames)"
    )
    args = parser.parse_args()
    bootstrap, ch_url = endpoints()
    print(
        f"sink bench: {args.scans:,} scans x {args.runs} runs, batch {args.batch_rows:,}, "
        f"{args.sinks} sink process(es), {args.partitions} partitions, "
        f"frames of up to {args.frame_rows:,} scans"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    t = time.perf_counter()
    values = make_values(args.scans, 5, args.partitions, args.frame_rows)
    print(f"  built {len(values):,} records in {time.perf_counter() - t:.1f} s", flush=True)
    results = []
    for run in range(args.runs):
        r = one_run(
            bootstrap, ch_url, values, args.scans, args.batch_rows, args.sinks, args.partitions
        )
        results.append(r)
        print(
            f"run {run + 1}: {r['seconds']:.1f} s, "
            f"{r['from_start_rows_s']:,.0f} rows/s from start, "
            f"{r['steady_rows_s']:,.0f} rows/s from the first row, "
            f"sink CPU {r['cpu_us_per_row']:.1f} us/row, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    for key in ("from_start_rows_s", "steady_rows_s", "cpu_us_per_row"):
        print(f"median {key}: {statistics.median(r[key] for r in results):,.1f}")


if __name__ == "__main__":
    main()
