"""Gateway throughput: accepted scans/s end to end (HTTP in, Kafka acks=all out).

Starts `scantrace gateway` in a subprocess against the running local services (or
SCANTRACE_KAFKA__BOOTSTRAP), on topics of its own (a fresh prefix, deleted afterwards),
then runs a load generator in another process: an aiohttp client with several requests
in flight posting msgpack batches over loopback for a fixed time. Reports the median of
the runs for each batch size, and checks the raw topic holds every accepted scan.

    scantrace services up --kafka apache
    python -m bench gateway [--duration 20] [--runs 3] [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, delete_topics, kafka_bootstrap
from scantrace.services.process import free_port

TOKEN = "bench-token"
CONCURRENCY = {1: 64, 10: 32, 100: 16, 1000: 8, 10000: 4}


def make_bodies(size: int, count: int, seed: int) -> list[bytes]:
    import msgpack

    rng = random.Random(seed)
    now = int(time.time() * 1000)
    bodies = []
    for _ in range(count):
        scans = [
            {
                "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "person_id": f"p{rng.randrange(1_000_000):07d}",
                "premises_id": f"NT-{rng.randrange(5000):05d}",
                "scanned_at": now - rng.randrange(3_600_000),
                "kind": "checkin" if rng.random() < 0.8 else "checkout",
            }
            for _ in range(size)
        ]
        bodies.append(msgpack.packb(scans))
    return bodies


async def load(url: str, size: int, duration: float, concurrency: int) -> dict[str, Any]:
    import aiohttp

    bodies = make_bodies(size, 16, seed=size)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"}
    accepted = requests = errors = 0
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + duration

        async def worker(i: int) -> None:
            nonlocal accepted, requests, errors
            n = i
            while time.perf_counter() < deadline:
                body = bodies[n % len(bodies)]
                n += 1
                started = time.perf_counter()
                async with session.post(f"{url}/v1/scans", data=body, headers=headers) as resp:
                    payload = await resp.read()
                    requests += 1
                    if resp.status == 200:
                        accepted += json.loads(payload)["accepted"]
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "size": size,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "accepted": accepted,
        "requests": requests,
        "errors": errors,
        "scans_per_s": round(accepted / elapsed),
        "requests_per_s": round(requests / elapsed),
        "p50_ms": round(pick(0.5) * 1000, 1),
        "p99_ms": round(pick(0.99) * 1000, 1),
    }


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"gateway exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("gateway not ready in time")


def raw_topic_size(servers: str, topic: str) -> int:
    """Scans in the topic: a frame (`ingest.wire.raw_frames`) counts as its scans."""
    from kafka import KafkaConsumer, TopicPartition

    from ingest.wire import split_raw_frame

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        scans = 0
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    scans += len(split_raw_frame(record.value) or [record.value])
        return scans
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1,100,1000", help="scans per request, comma-separated")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="requests in flight (0: by size)"
    )
    parser.add_argument(
        "--compression", default=None, help="gateway Kafka compression (default: the gateway's)"
    )
    parser.add_argument(
        "--load", nargs=4, metavar=("URL", "SIZE", "SECONDS", "CONCURRENCY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.load:
        url, size, seconds, conc = args.load
        print(json.dumps(asyncio.run(load(url, int(size), float(seconds), int(conc)))))
        return

    from ingest.admin import ensure_topics
    from ingest.kafka_settings import KafkaSettings

    servers = kafka_bootstrap()
    kafka = KafkaSettings(
        bootstrap=servers, topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.", partitions=4
    )
    ensure_topics(kafka)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SCANTRACE_KAFKA__BOOTSTRAP": servers,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "SCANTRACE_GATEWAY__TOKENS": json.dumps({TOKEN: "bench-gw"}),
        "SCANTRACE_GATEWAY__PORT": str(port),
    }
    if args.compression:
        env["SCANTRACE_GATEWAY__COMPRESSION"] = args.compression
    gateway = subprocess.Popen(
        [sys.executable, "-m", "scantrace.cli", "gateway", "--log-level", "warning"], env=env
    )
    results: dict[int, list[dict[str, Any]]] = {}
    total_accepted = 0
    try:
        wait_ready(url, gateway)
        for size in [int(s) for s in args.sizes.split(",")]:
            conc = args.concurrency or CONCURRENCY.get(size, 8)
            for run in range(args.runs):
                cpu_before = cpu_seconds(gateway.pid)
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench",
                        "gateway",
                        "--load",
                        url,
                        str(size),
                        str(args.duration),
                        str(conc),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=Path(__file__).resolve().parents[1],  # where the `bench` package is
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["gateway_cpu_pct"] = round(
                    100 * (cpu_seconds(gateway.pid) - cpu_before) / result["seconds"]
                )
                total_accepted += result["accepted"]
                results.setdefault(size, []).append(result)
                print(f"size {size:>5} run {run + 1}: {json.dumps(result)}", flush=True)
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.kill()
    stored = raw_topic_size(servers, kafka.raw)
    print()
    compression = args.compression or "default"
    print(f"machine: {os.cpu_count()} cores; Kafka {servers}; compression {compression}")
    head = ("batch", "conc", "scans/s (median)", "req/s", "p50 ms", "p99 ms", "gw CPU%")
    print("{:>6} {:>5} {:>17} {:>8} {:>7} {:>7} {:>7}  runs".format(*head))
    for size, runs in results.items():
        med = statistics.median(r["scans_per_s"] for r in runs)
        mid = sorted(runs, key=lambda r: r["scans_per_s"])[len(runs) // 2]
        print(
            f"{size:>6} {mid['concurrency']:>5} {med:>17,.0f} {mid['requests_per_s']:>8,} "
            f"{mid['p50_ms']:>7} {mid['p99_ms']:>7} {mid['gateway_cpu_pct']:>7}  "
            f"{[r['scans_per_s'] for r in runs]}"
        )
    print(f"load average at the end: {os.getloadavg()}")
    verdict = "ok" if stored == total_accepted else "MISMATCH"
    print(f"accepted {total_accepted:,}; in {kafka.raw}: {stored:,} ({verdict})")
    print(f"gateway exit code after SIGTERM: {gateway.returncode}")
    delete_topics(kafka)


if __name__ == "__main__":
    main()
