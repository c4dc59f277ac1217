"""Worker throughput: scans/s from scans.raw to scans.enriched, one worker process.

For each run, on topics of its own (a fresh prefix, deleted afterwards): publishes a
premises registry and N msgpack scans (about 5% redeliveries, 3% double taps, 1% unknown
premises, 0.1% garbage), computes the expected enriched count with the pure core, then
starts `scantrace worker` and times until scans.enriched holds them all. Reports the time
from process start (Python and Faust start-up, group join, table recovery included) and
from the first enriched record (the processing rate), and the median of the runs.

    scantrace services up --kafka apache
    python -m bench worker [--scans 300000] [--runs 3] [--guarantee exactly_once]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import msgpack

from bench.common import delete_topics, kafka_bootstrap, make_premises
from ingest.admin import ensure_topics
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, encode_premises
from processors.core import ProcessorCore
from processors.records import RawRecord
from tests.worker_kit import RowWatcher, WorkerProcess, publish, total


def make_scans(n: int, n_premises: int, now: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """(key, value) records of scans.raw, keyed by premises_id like the gateway's."""
    persons = [f"person-{i:07d}" for i in range(max(1, n // 4))]
    out: list[tuple[bytes, bytes]] = []
    recent: list[tuple[bytes, bytes]] = []
    while len(out) < n:
        roll = rng.random()
        if roll < 0.05 and recent:  # an at-least-once redelivery
            out.append(rng.choice(recent))
            continue
        premises = f"NT-{rng.randrange(int(n_premises * 1.01)):06d}"  # ~1% unknown
        scanned_at = now - rng.randrange(3_600_000)
        wire = {
            "event_id": f"{rng.getrandbits(96):024x}",
            "person_id": rng.choice(persons),
            "premises_id": premises,
            "scanned_at": scanned_at,
            "kind": "checkin" if rng.random() < 0.7 else "checkout",
            "gateway_id": "gw-app",
            "received_at": now - rng.randrange(60_000),
            "schema": 1,
        }
        key = premises.encode()
        out.append((key, msgpack.packb(wire)))
        if roll < 0.08:  # a double tap a few seconds later, a new event_id
            tap = dict(wire, event_id=f"{rng.getrandbits(96):024x}", scanned_at=scanned_at + 4000)
            out.append((key, msgpack.packb(tap)))
        elif roll < 0.081:
            out.append((key, b"\xc1garbage"))
        recent.append(out[-1])
        if len(recent) > 5000:
            recent = recent[-2500:]
    del out[n:]
    return out


def expected_enriched(
    premises: list[Premises], scans: list[tuple[bytes, bytes]], now: int
) -> tuple[int, dict[str, object]]:
    """What the worker must produce, from the pure core (per-key order is publish order)."""
    core = ProcessorCore()
    for p in premises:
        core.upsert_premises(p, now)
    result = core.process([RawRecord(value) for _, value in scans], now)
    return len(result.rows), core.counts.as_dict()


def process_cpu_seconds(worker: WorkerProcess) -> float:
    """User + system CPU time of the worker process so far (Linux /proc)."""
    if worker.proc is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_threads(worker: WorkerProcess) -> None:
    """CPU seconds of each thread of the worker (Linux /proc), to see where time goes."""
    assert worker.proc is not None
    tick = os.sysconf("SC_CLK_TCK")
    for task in sorted(Path(f"/proc/{worker.proc.pid}/task").iterdir()):
        name = (task / "comm").read_text().strip()
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        print(f"    thread {task.name} {name}: {(int(fields[11]) + int(fields[12])) / tick:.1f} s")


def run_once(args: argparse.Namespace, servers: str, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    kafka = KafkaSettings(
        bootstrap=servers, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", partitions=args.partitions
    )
    ensure_topics(kafka)
    now = int(time.time() * 1000)
    premises = make_premises(args.premises, rng)
    scans = make_scans(args.scans, args.premises, now, rng)
    want, counts = expected_enriched(premises, scans, now)
    try:
        publish(
            kafka, kafka.premises, ((p.premises_id.encode(), encode_premises(p)) for p in premises)
        )
        started = time.perf_counter()
        publish(kafka, kafka.raw, scans)
        print(
            f"  published {len(scans):,} scans in {time.perf_counter() - started:.1f} s; "
            f"expecting {want:,} enriched ({counts})"
        )
        with tempfile.TemporaryDirectory() as data_dir:
            worker = WorkerProcess(
                kafka,
                Path(data_dir),
                processing_guarantee=args.guarantee,
                batch_max_records=args.batch_max_records,
                log=open(Path(data_dir) / "worker.log", "wb"),  # noqa: SIM115
            )
            start = time.perf_counter()
            worker.start()
            first = None
            watcher = RowWatcher(kafka, kafka.enriched, committed_only=True)
            try:
                deadline = start + args.timeout
                have = 0
                while time.perf_counter() < deadline:
                    have = watcher.size()
                    if have and first is None:
                        first = time.perf_counter()
                    if have >= want:
                        break
                    if not worker.alive():
                        sys.exit(f"worker exited: {(Path(data_dir) / 'worker.log').read_text()}")
                    time.sleep(0.2)
                done = time.perf_counter()
                samples = worker.metrics()
                cpu_s = process_cpu_seconds(worker)
                if os.environ.get("BENCH_THREADS"):
                    print_threads(worker)
            finally:
                watcher.close()
                worker.stop()
            if have < want:
                log_text = (Path(data_dir) / "worker.log").read_text()[-3000:]
                sys.exit(f"timeout: {have:,} of {want:,} enriched\n{log_text}")
    finally:
        delete_topics(kafka)
    assert first is not None
    in_total = total(samples, "scantrace_worker_events_in_total")
    return {
        "total_s": done - start,
        "processing_s": done - first,
        "overall_rate": len(scans) / (done - start),
        "rate": len(scans) / max(done - first, 1e-9),
        "events_in": in_total,
        "batches": total(samples, "scantrace_worker_batch_duration_seconds_count"),
        "cpu_s": cpu_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scans", type=int, default=300_000)
    parser.add_argument("--premises", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once"
    )
    parser.add_argument("--batch-max-records", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    servers = kafka_bootstrap()
    print(
        f"{args.scans:,} scans, {args.premises:,} premises, {args.partitions} partitions, "
        f"{args.guarantee}, broker {servers}, {os.cpu_count()} CPUs"
    )
    runs = []
    for i in range(args.runs):
        r = run_once(args, servers, seed=20211115 + i)
        runs.append(r)
        print(
            f"  run {i + 1}: {r['rate']:,.0f} scans/s from the first output "
            f"({r['processing_s']:.1f} s), {r['overall_rate']:,.0f} scans/s from process "
            f"start ({r['total_s']:.1f} s), {r['batches']:.0f} batches, worker CPU "
            f"{r['cpu_s']:.1f} s ({args.scans / r['cpu_s']:,.0f} scans per CPU second, "
            "start-up included)"
        )
    rate = statistics.median(r["rate"] for r in runs)
    overall = statistics.median(r["overall_rate"] for r in runs)
    print(f"median: {rate:,.0f} scans/s processing, {overall:,.0f} scans/s including start-up")


if __name__ == "__main__":
    main()
