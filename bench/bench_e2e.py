"""End to end: scans/s from the load generator to rows visible in ClickHouse, sustained.

On topics and a database of its own, with the running local services (Kafka, ClickHouse):
publishes the synthetic province's premises registry (3,000 premises), starts gateway,
worker and sink as `scantrace run` does (`scantrace.pipeline.Pipeline`), then POSTs msgpack
batches of 1,000 scans to the gateway at `--rate` scans/s for `--seconds`, and waits until
ClickHouse holds every unique scan. The scans: distinct event ids (36-character UUIDs),
about 1 % resent (duplicates the worker drops), premises drawn with the synthetic
province's popularity skew, three scans per person at three different premises (so none is
a repeat and the expected row count is exact). Bodies are encoded before the clock starts.

Latency: every batch carries one marker scan at a premises of its own; a poller asks
ClickHouse for the markers every 0.25 s (the primary key's first column, so each poll
reads a few granules) and takes `first seen - POST start` as that batch's scan-to-stored
latency. Memory: the peak resident set (VmHWM) of the broker, ClickHouse, gateway, worker
and sink, and the worker's resident growth per tracked scan (the `seen` table's entries).

    scantrace services up --kafka apache
    python -m bench e2e [--rate 20000] [--seconds 300]

The cluster shape: `--brokers 3 --workers 2 --sinks 2` on `scantrace services up --kafka
apache --brokers 3 --clickhouse-shards 2` (the running services must have that many
brokers): topics replicated three times (`min.insync.replicas` 2), the cluster schema on
every shard (Distributed tables), two workers and two sinks in their groups. CPU and peak
memory are then given per process and per stage (every broker, shard, worker, sink).

Restart the services before a run (`scantrace services down && scantrace services up`) for
the broker's and ClickHouse's peak memory to be this run's.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import msgspec

from bench.common import (
    BENCH_PERSON_HASH_KEY,
    cpu_seconds,
    delete_topics,
    endpoints,
    quantile,
)
from ingest.admin import ensure_topics
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, encode_premises
from scantrace.pipeline import Pipeline
from scantrace.services.manager import LOCAL_CLUSTER
from scantrace.services.process import free_port, free_port_run
from scantrace.synth import generate_premises
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate, migrate_nodes
from tests.worker_kit import publish

TOKEN = "bench-e2e-token"
MARKER_PREMISES = "BENCH-LATENCY"


def make_bodies(
    premises: list[Premises], n_batches: int, batch: int, seed: int, now_ms: int
) -> tuple[list[bytes], list[int]]:
    """msgpack bodies of `batch` scans (the last one the batch's marker); returns the
    bodies and the number of unique scans in each (markers included)."""
    rng = random.Random(seed)
    ids = [p.premises_id for p in premises]
    # The synthetic province's skew: a premises' weight falls with its rank.
    cum: list[float] = []
    acc = 0.0
    for rank in range(len(ids)):
        acc += 1.0 / (rank + 10) ** 0.9
        cum.append(acc)
    total = cum[-1]
    encode = msgspec.msgpack.Encoder().encode
    bodies: list[bytes] = []
    uniques: list[int] = []
    recent: list[dict[str, object]] = []
    person = 0
    for b in range(n_batches):
        scans: list[dict[str, object]] = []
        unique = 1  # the marker
        while len(scans) < batch - 1:
            if recent and rng.random() < 0.01:  # a resend: same event, same bytes
                scans.append(rng.choice(recent))
                continue
            person += 1
            picked: set[str] = set()
            while len(picked) < 3:
                picked.add(ids[bisect.bisect(cum, rng.random() * total)])
            for premises_id in picked:
                if len(scans) >= batch - 1:
                    break
                scan = {
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "person_id": f"P{person:09d}",
                    "premises_id": premises_id,
                    "scanned_at": now_ms - rng.randrange(600_000),
                    "kind": "checkin",
                }
                scans.append(scan)
                unique += 1
                if len(recent) < 2000:
                    recent.append(scan)
                else:
                    recent[rng.randrange(2000)] = scan
        scans.append(
            {
                "event_id": f"marker-{b:07d}",
                "person_id": f"marker-{b:07d}",
                "premises_id": MARKER_PREMISES,
                "scanned_at": now_ms,
                "kind": "checkin",
            }
        )
        bodies.append(encode(scans))
        uniques.append(unique)
    return bodies, uniques


def status_mib(pid: int, field: str) -> float:
    """A memory line of /proc/PID/status (`VmHWM`: peak resident set, `VmRSS`: now), MiB;
    0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("scantrace_"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def table_entries(samples: dict[str, float], table: str) -> float:
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("scantrace_worker_table_entries{") and f'table="{table}"' in k
    )


def print_inserts(samples: dict[str, float]) -> None:
    """The sink's inserts into `scans` over the whole run (its metrics at the end)."""
    table = 'table="scans"'

    def sample(name: str) -> float:
        return samples.get(f"scantrace_sink_{name}{{{table}}}", 0.0)

    count = sample("insert_duration_seconds_count")
    if not count:
        return
    slow = {
        le: count
        - samples.get(f'scantrace_sink_insert_duration_seconds_bucket{{le="{le}",{table}}}', 0)
        for le in ("1.0", "2.5")
    }
    print(
        f"  sink inserts into scans: {count:,.0f}, {sample('batch_rows_sum') / count:,.0f} rows "
        f"and {sample('insert_duration_seconds_sum') / count:.2f} s each on average; "
        f"{slow['1.0']:,.0f} took over 1 s, {slow['2.5']:,.0f} over 2.5 s"
    )


class Poller(threading.Thread):
    """Watches ClickHouse (when each marker became visible, the row count over time) and,
    every second, the worker's and the sink's consumer lag (which stage holds a backlog)."""

    def __init__(
        self, clickhouse: ClickHouseSettings, worker_ports: list[int], sink_ports: list[int]
    ) -> None:
        super().__init__(daemon=True)
        self.client = connect(clickhouse)
        self.ports = {"worker": worker_ports, "sink": sink_ports}
        self.seen: dict[str, float] = {}
        # marker -> (gateway's received_at, worker's processed_at), epoch seconds
        self.stamps: dict[str, tuple[float, float]] = {}
        self.counts: list[tuple[float, int]] = []
        self.lags: dict[str, list[tuple[float, float]]] = {"worker": [], "sink": []}
        self.stop = threading.Event()

    def _lags(self, now: float) -> None:
        for stage, ports in self.ports.items():
            lag = 0.0
            for port in ports:
                samples = scrape(port)
                lag += sum(
                    v
                    for k, v in samples.items()
                    if k.startswith(f"scantrace_{stage}_consumer_lag{{") and ".scans." in k
                )
            self.lags[stage].append((now, lag))

    def run(self) -> None:
        next_count = 0.0
        while not self.stop.is_set():
            rows = self.client.execute(
                "SELECT event_id, toUnixTimestamp64Milli(received_at), "
                "toUnixTimestamp64Milli(processed_at) FROM scans WHERE premises_id = %(p)s",
                {"p": MARKER_PREMISES},
            )
            now = time.time()
            for event_id, received_ms, processed_ms in rows:
                if event_id not in self.seen:
                    self.seen[event_id] = now
                    self.stamps[event_id] = (received_ms / 1000, processed_ms / 1000)
            if now >= next_count:
                next_count = now + 1.0
                count = self.client.execute("SELECT count() FROM scans")[0][0]
                self.counts.append((now, count))
                self._lags(now)
            self.stop.wait(0.25)


async def send_all(
    url: str, bodies: list[bytes], batch: int, rate: float, concurrency: int
) -> tuple[dict[int, float], int, dict[int, int], float]:
    """POST every body, paced to `rate` scans/s: (send time per batch, scans accepted,
    HTTP errors by status, seconds)."""
    sent_at: dict[int, float] = {}
    errors: dict[int, int] = {}
    accepted = 0
    next_index = 0
    start = time.monotonic()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, next_index
        while next_index < len(bodies):
            i = next_index
            next_index += 1
            delay = start + i * batch / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[i] = time.time()
            while True:
                async with session.post(url, data=bodies[i], headers=headers) as resp:
                    if resp.status == 503:
                        errors[503] = errors.get(503, 0) + 1
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status != 200:
                        errors[resp.status] = errors.get(resp.status, 0) + 1
                        break
                    accepted += int((await resp.json())["accepted"])
                    break

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return sent_at, accepted, errors, time.monotonic() - start


def main() -> None:  # one linear script
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--brokers", type=int, default=1, help="brokers the services must have")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--sinks", type=int, default=1)
    args = ap.parse_args()

    load_start = os.getloadavg()[0]
    bootstrap, ch_url = endpoints()
    status = json.loads(
        os.popen(f"{sys.executable} -m scantrace.cli services status --json").read() or "{}"
    )
    nodes, shards = status["kafka_nodes"], status["clickhouse_shards"]
    if len(nodes) != args.brokers:
        sys.exit(
            f"--brokers {args.brokers}, but the services have {len(nodes)}: scantrace services "
            f"up --kafka apache --brokers {args.brokers} [--clickhouse-shards 2]"
        )
    service_pids = {
        **{("kafka" if len(nodes) == 1 else f"kafka-{n['id']}"): n["pid"] for n in nodes},
        **{
            ("clickhouse" if len(shards) == 1 else f"clickhouse-{s['shard']}"): s["pid"]
            for s in shards
        },
    }
    tag = uuid.uuid4().hex[:8]
    replication = min(3, args.brokers)
    kafka = KafkaSettings(
        bootstrap=bootstrap,
        topic_prefix=f"e2e{tag}.",
        partitions=args.partitions,
        replication_factor=replication,
    )
    clickhouse = ClickHouseSettings(url=f"{ch_url}/e2e_{tag}")
    ensure_topics(kafka)
    if len(shards) > 1:
        migrate_nodes(
            clickhouse.model_copy(update={"cluster": LOCAL_CLUSTER}),
            [ClickHouseSettings(url=f"{s['native']}/e2e_{tag}") for s in shards],
        )
    else:
        migrate(clickhouse)
    premises = [
        *generate_premises(args.seed, 3000),
        Premises(MARKER_PREMISES, "Latency markers", "office", "Phan Rang-Thap Cham"),
    ]
    publish(kafka, kafka.premises, [(p.premises_id.encode(), encode_premises(p)) for p in premises])

    n_batches = int(args.rate * args.seconds / args.batch)
    t = time.perf_counter()
    bodies, uniques = make_bodies(
        premises[:-1], n_batches, args.batch, args.seed, int(time.time() * 1000)
    )
    total = n_batches * args.batch
    unique = sum(uniques)
    print(
        f"e2e bench: {total:,} scans ({unique:,} unique) in {n_batches:,} batches of "
        f"{args.batch:,}, target {args.rate:,.0f} scans/s for {args.seconds:.0f} s, "
        f"{args.partitions} partitions, {args.brokers} brokers (replication {replication}), "
        f"{len(shards)} ClickHouse shards, {args.workers} workers, {args.sinks} sinks; "
        f"bodies built in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )

    work = Path(tempfile.mkdtemp(prefix="scantrace-e2e-"))
    env = {
        "SCANTRACE_KAFKA__BOOTSTRAP": bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "SCANTRACE_KAFKA__PARTITIONS": str(kafka.partitions),
        "SCANTRACE_KAFKA__REPLICATION_FACTOR": str(replication),
        "SCANTRACE_CLICKHOUSE__URL": clickhouse.url,
        "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": BENCH_PERSON_HASH_KEY,
        "SCANTRACE_GATEWAY__TOKENS": json.dumps({TOKEN: "gw-bench"}),
        "SCANTRACE_SINK__GROUP_ID": f"e2e-sink-{tag}",
        "SCANTRACE_WORKER__DATA_DIR": str(work / "worker"),
    }
    os.environ.update(env)
    pipeline = Pipeline(
        gateway_port=free_port(),
        worker_metrics_port=free_port_run(args.workers),
        sink_metrics_port=free_port_run(args.sinks),
        log_dir=work / "logs",
        workers=args.workers,
        sinks=args.sinks,
    )
    pipeline.start()
    poller = Poller(clickhouse, pipeline.ports("worker"), pipeline.ports("sink"))
    client = connect(clickhouse)
    try:
        deadline = time.monotonic() + 120
        while not all(scrape(p) for p in [*pipeline.ports("worker"), *pipeline.ports("sink")]):
            if time.monotonic() > deadline or pipeline.failed():
                sys.exit(f"pipeline did not start: {pipeline.failed()}")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{pipeline.gateway_port}/v1/scans"
        # Warm-up: one batch through the whole pipeline before the clock starts.
        asyncio.run(send_all(url, bodies[:1], args.batch, args.rate, 1))
        while client.execute("SELECT count() FROM scans")[0][0] < uniques[0]:
            if time.monotonic() > deadline or pipeline.failed():
                sys.exit(f"warm-up did not reach ClickHouse: {pipeline.failed()}")
            time.sleep(0.2)
        worker_pids = [pipeline.procs[n].pid for n in pipeline.names("worker", args.workers)]
        rss0 = sum(status_mib(pid, "VmRSS") for pid in worker_pids)
        seen0 = sum(table_entries(scrape(p), "seen") for p in pipeline.ports("worker"))
        pids = {**service_pids, **{name: p.pid for name, p in pipeline.procs.items()}}
        pids["load generator"] = os.getpid()
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        poller.start()
        sent_at, accepted, errors, send_s = asyncio.run(
            send_all(url, bodies[1:], args.batch, args.rate, args.concurrency)
        )
        sent_at = {i + 1: v for i, v in sent_at.items()}
        end_send = time.time()
        print(
            f"  sent {total - args.batch:,} scans in {send_s:.1f} s: "
            f"{(total - args.batch) / send_s:,.0f} scans/s offered, {accepted:,} accepted, "
            f"HTTP errors {errors or 'none'}",
            flush=True,
        )
        drain_deadline = time.monotonic() + 600
        while True:
            # count() reads part metadata only; uniqExact over millions of ids would cost
            # ClickHouse hundreds of MiB each time and inflate its peak memory.
            stored = client.execute("SELECT count() FROM scans")[0][0]
            if stored >= unique:
                break
            if time.monotonic() > drain_deadline or pipeline.failed():
                sys.exit(f"only {stored:,} of {unique:,} stored ({pipeline.failed()} failed)")
            time.sleep(0.5)
        all_stored = time.time()
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        time.sleep(0.6)
        poller.stop.set()
        poller.join()
        sink_samples: dict[str, float] = {}
        for port in pipeline.ports("sink"):
            for k, v in scrape(port).items():
                sink_samples[k] = sink_samples.get(k, 0.0) + v
        rss1 = sum(status_mib(pid, "VmRSS") for pid in worker_pids)
        seen1 = sum(table_entries(scrape(p), "seen") for p in pipeline.ports("worker"))
        peaks = {name: status_mib(pid, "VmHWM") for name, pid in service_pids.items()}
        peaks.update({name: status_mib(p.pid, "VmHWM") for name, p in pipeline.procs.items()})
        distinct = client.execute("SELECT uniqExact(event_id) FROM scans")[0][0]
        if distinct != unique:
            sys.exit(f"ClickHouse holds {distinct:,} distinct scans, expected {unique:,}")
    finally:
        pipeline.stop()
        poller.stop.set()
        client.execute(f"DROP DATABASE IF EXISTS `{clickhouse.database}`")
        delete_topics(kafka)

    start_send = min(sent_at.values())
    latencies = [
        poller.seen[f"marker-{i:07d}"] - t
        for i, t in sent_at.items()
        if f"marker-{i:07d}" in poller.seen
    ]
    counts = [(t, c) for t, c in poller.counts if start_send <= t <= end_send]
    window_rate = (
        (counts[-1][1] - counts[0][1]) / (counts[-1][0] - counts[0][0]) if len(counts) > 1 else 0.0
    )
    stored_scans = unique - uniques[0]  # the warm-up batch went before the clock
    print(f"  all {unique:,} unique scans stored {all_stored - end_send:.1f} s after the last POST")
    print(
        f"  sustained: {stored_scans / (all_stored - start_send):,.0f} scans/s from the first "
        f"POST to the last row stored; {window_rate:,.0f} rows/s stored while sending"
    )
    print(
        f"  scan-to-stored latency over {len(latencies):,} batches: p50 "
        f"{statistics.median(latencies):.2f} s, p99 {quantile(latencies, 0.99):.2f} s, "
        f"max {max(latencies):.2f} s"
    )
    stages = [
        (
            poller.stamps[m][0] - t,
            poller.stamps[m][1] - poller.stamps[m][0],
            poller.seen[m] - poller.stamps[m][1],
        )
        for i, t in sent_at.items()
        if (m := f"marker-{i:07d}") in poller.stamps
    ]
    if stages:
        names = ("POST to gateway stamp", "stamp to worker", "worker to visible in ClickHouse")
        print(
            "  where the latency goes, p50 / p99 (s): "
            + "; ".join(
                f"{name} {statistics.median(col):.2f} / {quantile(list(col), 0.99):.2f}"
                for name, col in zip(names, zip(*stages, strict=True), strict=True)
            )
        )
    print("  by 30 s of sending: latency p50 / p99 (s); worker, sink lag max (records)")
    for w in range(int((end_send - start_send) // 30) + 1):
        lo, hi = start_send + 30 * w, start_send + 30 * (w + 1)
        part = [
            poller.seen[f"marker-{i:07d}"] - t
            for i, t in sent_at.items()
            if lo <= t < hi and f"marker-{i:07d}" in poller.seen
        ]
        lags = [max((v for t, v in poller.lags[s] if lo <= t < hi), default=0) for s in poller.lags]
        if part:
            print(
                f"    {30 * w:>4}-{30 * (w + 1):<4} s: {statistics.median(part):5.2f} / "
                f"{quantile(part, 0.99):5.2f}; lag {lags[0]:,.0f}, {lags[1]:,.0f}"
            )
    for stage, series in poller.lags.items():
        during = [lag for t, lag in series if start_send <= t <= end_send]
        if during:
            print(
                f"  {stage} consumer lag while sending (records): median "
                f"{statistics.median(during):,.0f}, max {max(during):,.0f}"
            )
    print(
        "  peak resident memory (VmHWM, MiB): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items())
        + f"; sum {sum(peaks.values()):,.0f}"
    )
    cpu_sum = sum(cpu.values())
    print(
        f"  CPU seconds from the first POST to the last row ({all_stored - start_send:.0f} s "
        "of wall clock, 2 cores): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in cpu.items())
        + f"; sum {cpu_sum:,.0f} ({cpu_sum * 1e6 / stored_scans:,.0f} us a scan)"
    )
    if len(cpu) > 6:  # the cluster shape: every stage's processes together
        per_stage: dict[str, float] = {}
        for name, seconds in cpu.items():
            stage = name.split("-")[0]
            per_stage[stage] = per_stage.get(stage, 0.0) + seconds
        print(
            "  CPU per scan by stage (us): "
            + ", ".join(f"{k} {v * 1e6 / stored_scans:,.1f}" for k, v in per_stage.items())
        )
    print_inserts(sink_samples)
    tracked = seen1 - seen0
    if tracked > 0:
        print(
            f"  worker: {tracked:,.0f} more tracked scans (seen), "
            f"resident +{rss1 - rss0:,.0f} MiB: "
            f"{(rss1 - rss0) * 2**20 / tracked:,.0f} bytes per tracked scan"
        )
    print(
        f"  load average at the start {load_start:.1f}, at the end {os.getloadavg()[0]:.1f}; "
        f"logs in {work / 'logs'}"
    )


if __name__ == "__main__":
    main()
