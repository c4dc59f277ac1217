"""The fault matrix's parts: the cluster services of their own, `scantrace run` as a real
supervisor process, a stream of scans whose every acknowledgement is recorded, and the
exact comparison of ClickHouse with what was acknowledged."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from kafka import KafkaConsumer, TopicPartition
from pydantic import SecretStr

from ingest.admin import ensure_topics
from ingest.deadletter import decode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.registry import publish_registry
from ingest.wire import split_raw_frame
from processors.horizon import hash_keys
from processors.records import decode_frame
from processors.tables import HORIZON_MAGIC
from scantrace import synth
from scantrace.services import manager
from scantrace.services.process import alive, free_port_run, spawn, stop
from scantrace.settings import ServicesSettings
from scantrace.topics import _admin, _group_offsets, describe, topic_states
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate, migrate_nodes

TOKEN = "fault-matrix-token"
PERSON_HASH_KEY = "fault-matrix-person-hash-key"
PARTITIONS = 4
RUN_MARKER = "scantrace.cli run"


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` (an exception counts as not yet) until true, or fail."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Cluster:
    """The services of `scantrace services up --brokers 3 --clickhouse-shards 2`, in a
    state folder of their own."""

    settings: ServicesSettings

    def status(self) -> dict[str, Any]:
        return manager.status(self.settings)

    @property
    def bootstrap(self) -> str:
        return str(self.status()["kafka_bootstrap"])

    def shard_ports(self) -> list[int]:
        return [int(s["native"].rsplit(":", 1)[1]) for s in self.status()["clickhouse_shards"]]

    def kafka(self, prefix: str) -> KafkaSettings:
        return KafkaSettings(
            bootstrap=self.bootstrap,
            topic_prefix=prefix,
            partitions=PARTITIONS,
            replication_factor=3,
        )

    def database(self, name: str) -> ClickHouseSettings:
        """A database of its own with the cluster schema on every shard (the front is the
        first shard); the `default` user."""
        front = ClickHouseSettings(
            url=f"clickhouse://127.0.0.1:{self.shard_ports()[0]}/{name}",
            person_hash_key=SecretStr(PERSON_HASH_KEY),
            cluster=manager.LOCAL_CLUSTER,
        )
        nodes = [
            ClickHouseSettings(url=f"clickhouse://127.0.0.1:{p}/{name}") for p in self.shard_ports()
        ]
        migrate_nodes(front, nodes)
        return front

    def node_pid(self, node_id: int) -> int:
        return next(int(n["pid"]) for n in self.status()["kafka_nodes"] if n["id"] == node_id)

    def revive(self) -> list[str]:
        """`scantrace services up` again: the dead members start on their ports."""
        return list(manager.up(self.settings)["started"])

    def wait_in_sync(self, kafka: KafkaSettings, timeout: float = 240.0) -> None:
        from kafka import KafkaAdminClient

        def in_sync() -> bool:
            admin = KafkaAdminClient(**kafka.kafka_python_config(), request_timeout_ms=5000)
            try:
                names = [s.name for s in kafka.topic_specs()]
                states = topic_states(admin, names)
                return all(not t.error and t.under_replicated == 0 for t in states)
            finally:
                admin.close()

        wait(in_sync, timeout, "every replica back in sync")


def single_database(port: int, name: str) -> ClickHouseSettings:
    settings = ClickHouseSettings(
        url=f"clickhouse://127.0.0.1:{port}/{name}", person_hash_key=SecretStr(PERSON_HASH_KEY)
    )
    migrate(settings)
    return settings


# Every run started, so that the package's fixture stops those a failed case left.
RUNS: list[Run] = []


@dataclass
class Run:
    """`scantrace run --workers N --sinks M --gateways K` as a real process of its own
    session (so a power cut can SIGKILL it and its children at once)."""

    kafka: KafkaSettings
    clickhouse: ClickHouseSettings
    log_dir: Path
    state_dir: Path
    workers: int = 2
    sinks: int = 2
    gateways: int = 1
    restart_delay: float = 10.0
    gateway_port: int = 0
    pid: int = 0
    metrics_port: int = 0
    sink_group: str = field(default_factory=lambda: f"sink-{uuid.uuid4().hex[:8]}")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SCANTRACE_SERVICES__STATE_DIR": str(self.state_dir),
                "SCANTRACE_KAFKA__BOOTSTRAP": self.kafka.bootstrap,
                "SCANTRACE_KAFKA__TOPIC_PREFIX": self.kafka.topic_prefix,
                "SCANTRACE_KAFKA__PARTITIONS": str(self.kafka.partitions),
                "SCANTRACE_KAFKA__REPLICATION_FACTOR": str(self.kafka.replication_factor),
                "SCANTRACE_CLICKHOUSE__URL": self.clickhouse.url,
                "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY": PERSON_HASH_KEY,
                "SCANTRACE_GATEWAY__TOKENS": json.dumps({TOKEN: "gw-faults"}),
                "SCANTRACE_SINK__GROUP_ID": self.sink_group,
                "SCANTRACE_SINK__BATCH_SECONDS": "0.5",
                "SCANTRACE_WORKER__DATA_DIR": str(self.log_dir.parent / "worker-data"),
            }
        )
        return env

    def start(self) -> Run:
        if not self.gateway_port:
            # One run of free ports for all: separate runs can start on the same port.
            first = free_port_run(self.gateways + self.workers + self.sinks + 1)
            self.gateway_port = first
            self.worker_port = first + self.gateways
            self.sink_port = self.worker_port + self.workers
            self.metrics_port = self.sink_port + self.sinks
        argv = [
            sys.executable,
            "-m",
            "scantrace.cli",
            "run",
            "--workers",
            str(self.workers),
            "--sinks",
            str(self.sinks),
            "--gateways",
            str(self.gateways),
            "--gateway-port",
            str(self.gateway_port),
            "--worker-metrics-port",
            str(self.worker_port),
            "--sink-metrics-port",
            str(self.sink_port),
            "--metrics-port",
            str(self.metrics_port),
            "--restart-delay",
            str(self.restart_delay),
            "--log-dir",
            str(self.log_dir),
        ]
        self.pid = spawn(argv, self.log_dir.parent / "run.log", env=self.env())
        RUNS.append(self)
        try:
            for url in self.urls():
                wait(lambda url=url: _ready(url), 180, f"gateway {url}")  # type: ignore[misc]
            # Every worker and sink in its group before the stream starts: each case then
            # tests its own fault, not the groups forming (the worker-kill case covers that).
            names = [
                *(["worker"] + [f"worker-{i}" for i in range(2, self.workers + 1)]),
                *(["sink"] + [f"sink-{i}" for i in range(2, self.sinks + 1)]),
            ]
            for name in names:
                wait(lambda name=name: self.has_partitions(name), 180, f"{name} assigned")  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise
        return self

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.gateway_port + i}" for i in range(self.gateways)]

    def children(self) -> dict[str, dict[str, Any]]:
        data: dict[str, dict[str, Any]] = json.loads((self.log_dir / "run.json").read_text())
        return data

    def restarts_metric(self, component: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith(f'scantrace_run_restarts_total{{component="{component}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def has_partitions(self, name: str) -> bool:
        """The component has logged an assignment of partitions (it is in its group)."""
        log = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return "processing partitions [" in log or "assigned ['" in log

    def kill_child(self, name: str) -> int:
        pid = int(self.children()[name]["pid"])
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_in_group(self, name: str, component: str) -> None:
        """SIGKILL `name` once it holds partitions of its group; the survivor takes them
        while scans keep coming, and the supervisor starts it again, counted once."""
        wait(lambda: self.has_partitions(name), 180, f"{name} in the group")
        killed = self.kill_child(name)
        wait(lambda: not alive(killed), 30, f"{name} gone")
        time.sleep(15)
        wait(lambda: self.children()[name]["restarts"] == 1, 120, f"{name} restarted")
        assert self.children()[name]["pid"] != killed
        assert self.restarts_metric(component) == 1
        time.sleep(15)

    def power_cut(self) -> None:
        """SIGKILL the supervisor and every component at once (one process group)."""
        os.killpg(self.pid, signal.SIGKILL)
        wait(lambda: not alive(self.pid), 30, "the supervisor gone")

    def stop(self) -> None:
        if self.pid:
            stop(self.pid, RUN_MARKER, timeout=90)

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=3) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@dataclass
class Ledger:
    """What the gateways acknowledged: a batch counts once its POST answered 200."""

    fresh: set[str] = field(default_factory=set)  # unique valid scans: stored once each
    repeats: set[str] = field(default_factory=set)  # double taps: never stored
    invalid: set[str] = field(default_factory=set)  # dead letters
    duplicates: int = 0  # resent scans (same event id): stored once with their first copy
    batches: int = 0
    retries: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class Stream:
    """Scans POSTed to the gateways by `senders` threads, `rate` batches a second in all,
    until `stop()`. A request without a 200 (refused, cut, timed out) is sent again,
    the same body, to the next gateway, as the README tells gateways to. Each batch:
    fresh scans, double taps of some of them (repeats), resends of earlier scans
    (duplicates) and scans that break the contract (dead letters)."""

    def __init__(
        self,
        urls: Callable[[], list[str]],
        premises: list[str],
        *,
        batch: int = 200,
        rate: float = 2.0,
        senders: int = 3,
        seed: int = 7,
    ) -> None:
        self.urls = urls
        self.premises = premises
        self.batch = batch
        self.rate = rate
        self.senders = senders
        self.rng = random.Random(seed)
        self.tag = uuid.uuid4().hex[:6]
        self.ledger = Ledger()
        self.lock = threading.Lock()
        self.next_batch = 0
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sent_fresh: list[dict[str, Any]] = []  # for duplicates
        self.encode = msgspec.msgpack.Encoder().encode
        self.inflight = 0

    def _make(self, b: int) -> tuple[bytes, set[str], set[str], set[str], int]:
        now = int(time.time() * 1000)
        scans: list[dict[str, Any]] = []
        fresh: set[str] = set()
        repeats: set[str] = set()
        invalid: set[str] = set()
        duplicates = 0
        with self.lock:
            rng = random.Random(self.rng.random())
            earlier = list(self.sent_fresh[-2000:])
        n_fresh = self.batch * 9 // 10
        for i in range(n_fresh):
            scan = {
                "event_id": f"{self.tag}-{b:05d}-{i:03d}",
                "person_id": f"P{self.tag}-{b:05d}-{i:03d}",
                "premises_id": rng.choice(self.premises),
                "scanned_at": now - rng.randrange(600_000),
                "kind": "checkin",
            }
            scans.append(scan)
            fresh.add(scan["event_id"])
            if i % 25 == 0:  # a double tap 20 s later: a repeat
                tap = {
                    **scan,
                    "event_id": f"{scan['event_id']}-r",
                    "scanned_at": scan["scanned_at"] + 20_000,
                }
                scans.append(tap)
                repeats.add(tap["event_id"])
        for _ in range(self.batch // 25):
            if earlier:
                scans.append(rng.choice(earlier))
                duplicates += 1
        for i in range(self.batch // 50):
            bad = {
                "event_id": f"{self.tag}-{b:05d}-x{i}",
                "person_id": "P-bad",
                "premises_id": rng.choice(self.premises),
                "scanned_at": now,
                "kind": "bogus",
            }
            scans.append(bad)
            invalid.add(bad["event_id"])
        with self.lock:
            self.sent_fresh.extend(s for s in scans if s["event_id"] in fresh)
        return self.encode(scans), fresh, repeats, invalid, duplicates

    def _post(self, url: str, body: bytes) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{url}/v1/scans",
            data=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/msgpack"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), ""
        except OSError as exc:
            return 0, type(exc).__name__

    def _sender(self, index: int) -> None:
        start = time.monotonic()
        while not self.stopping.is_set():
            with self.lock:
                b = self.next_batch
                self.next_batch += 1
            delay = start + b / self.rate - time.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                return
            body, fresh, repeats, invalid, duplicates = self._make(b)
            attempt = 0
            deadline = time.monotonic() + 600
            while True:
                urls = self.urls()
                url = urls[(b + attempt) % len(urls)]
                with self.lock:
                    self.inflight += 1
                status, text = self._post(url, body)
                with self.lock:
                    self.inflight -= 1
                if status == 200:
                    accepted = json.loads(text)["accepted"]
                    assert accepted == len(fresh) + len(repeats) + duplicates, text[:300]
                    with self.lock:
                        led = self.ledger
                        led.fresh |= fresh
                        led.repeats |= repeats
                        led.invalid |= invalid
                        led.duplicates += duplicates
                        led.batches += 1
                    break
                with self.lock:
                    key = str(status or text)
                    self.ledger.failures[key] = self.ledger.failures.get(key, 0) + 1
                    self.ledger.retries += 1
                attempt += 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"batch {b} never acknowledged")
                time.sleep(0.5)

    def start(self) -> Stream:
        for i in range(self.senders):
            t = threading.Thread(target=self._sender, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def acknowledged(self) -> int:
        with self.lock:
            return self.ledger.batches

    def stop(self, timeout: float = 600) -> Ledger:
        """Stop sending new batches; wait until every batch begun is acknowledged."""
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a batch is still unacknowledged"
        return self.ledger


@dataclass(frozen=True)
class Stored:
    ids: set[str]
    rows: int
    dead: set[str]


def stored(ch: ClickHouseSettings) -> Stored:
    client = connect(ch)
    try:
        ids = {r[0] for r in client.execute("SELECT DISTINCT event_id FROM scans")}
        rows = client.execute("SELECT count() FROM scans")[0][0]
        dead = {r[0] for r in client.execute("SELECT DISTINCT event_id FROM dead_letters")}
        return Stored(ids, rows, dead)
    finally:
        client.disconnect()


def drained(kafka: KafkaSettings, run: Run, worker_group: str) -> bool:
    """Every consumer group of the pipeline has committed the end of what it reads."""
    d = describe(
        kafka,
        {
            "worker": (worker_group, [kafka.raw]),
            "sink": (run.sink_group, [kafka.enriched, kafka.dlq]),
        },
    )
    return all(g.lag == 0 for g in d.lags) and all(
        g.partitions_committed > 0 for g in d.lags if g.topic != kafka.dlq
    )


def assert_exactly_once(
    ch: ClickHouseSettings,
    ledger: Ledger,
    kafka: KafkaSettings,
    run: Run,
    shard_urls: list[ClickHouseSettings],
    timeout: float = 600,
) -> Stored:
    """Every acknowledged unique scan is stored, once after merges; no repeat is stored;
    every scan that broke the contract is a dead letter, and nothing else is."""
    assert ledger.fresh and ledger.repeats and ledger.invalid and ledger.duplicates
    worker_group = f"{kafka.topic_prefix}scantrace-worker"
    try:
        # The gateways acknowledged every batch, so scans.raw is complete; the worker
        # commits a batch once its outputs are in Kafka and the sink once its rows are in
        # ClickHouse: with both groups at the end, everything that will land has landed.
        wait(lambda: drained(kafka, run, worker_group), timeout, "the consumer groups drained")
    except AssertionError as exc:
        got = stored(ch)
        lags = describe(
            kafka,
            {
                "worker": (worker_group, [kafka.raw]),
                "sink": (run.sink_group, [kafka.enriched, kafka.dlq]),
            },
        ).lags
        raise AssertionError(
            f"{exc}\nacknowledged: {len(ledger.fresh)} scans, {len(ledger.invalid)} invalid, "
            f"{ledger.batches} batches, {ledger.retries} retries {ledger.failures}; stored "
            f"{len(got.ids)} scans ({len(ledger.fresh - got.ids)} missing, e.g. "
            f"{sorted(ledger.fresh - got.ids)[:5]}), {len(got.dead)} dead letters; "
            f"lags {[(g.component, g.topic, g.lag, g.partitions_committed) for g in lags]}"
        ) from None
    time.sleep(3)  # anything still on its way would land now
    got = stored(ch)
    missing = ledger.fresh - got.ids
    assert not missing, (
        f"{len(missing)} acknowledged scans lost, e.g. {sorted(missing)[:5]}\n"
        + trace_lost(kafka, run, missing)
    )
    assert not got.ids & ledger.repeats, "a double tap was stored"
    assert got.ids == ledger.fresh, f"unexpected: {sorted(got.ids - ledger.fresh)[:5]}"
    assert got.dead == ledger.invalid
    # After merges every event id is one row, in both access paths.
    for node in shard_urls:
        client = connect(node)
        try:
            for table in ("scans", "scans_by_person"):
                local = f"{table}_local" if len(shard_urls) > 1 else table
                client.execute(f"OPTIMIZE TABLE {local} FINAL")
        finally:
            client.disconnect()
    client = connect(ch)
    try:
        for table in ("scans", "scans_by_person"):
            rows, unique = client.execute(f"SELECT count(), uniqExact(event_id) FROM {table}")[0]
            assert rows == unique == len(ledger.fresh), (table, rows, unique)
    finally:
        client.disconnect()
    return got


def _read_topic(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of `topic` now (kafka-python records), read without a group."""
    consumer = KafkaConsumer(
        **kafka.kafka_python_config(), enable_auto_commit=False, client_id="faultkit-trace"
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for recs in consumer.poll(timeout_ms=1000, max_records=100_000).values():
                out.extend(recs)
        return out
    finally:
        consumer.close()


def worker_counters(run: Run) -> dict[str, dict[str, float]]:
    """Each worker's event counters and parked gauge, from its metrics endpoint (what a
    lost scan's fate in the worker would show: parked, counted a duplicate or a repeat)."""
    wanted = (
        "events_in_total",
        "duplicates_total",
        "repeats_total",
        "dead_letters_total",
        "parked_scans",
        "released_total",
    )
    names = ["worker"] + [f"worker-{i}" for i in range(2, run.workers + 1)]
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        totals: dict[str, float] = {}
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{run.worker_port + i}/metrics", timeout=5
            ) as resp:
                text = resp.read().decode()
        except OSError as exc:
            out[name] = {f"unreachable: {type(exc).__name__}": 0.0}
            continue
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            metric, _, value = line.rpartition(" ")
            base = metric.split("{", 1)[0].removeprefix("scantrace_worker_")
            if base in wanted:
                totals[base] = totals.get(base, 0.0) + float(value)
        out[name] = totals
    return out


def trace_lost(kafka: KafkaSettings, run: Run, missing: set[str]) -> str:
    """Where acknowledged scans that ClickHouse lacks are: their `scans.raw` partition and
    offsets against the worker group's committed offsets, whether they are in
    `scans.enriched` or `scans.dlq`, or in the `seen` changelog (taken for processed: a
    duplicate), and the workers' counters. A failure of the fault matrix reads from it."""
    lines = []
    try:
        where: dict[str, tuple[int, int]] = {}
        for rec in _read_topic(kafka, kafka.raw):
            for element in split_raw_frame(rec.value) or [rec.value]:
                try:
                    event_id = msgspec.msgpack.decode(element).get("event_id")
                except Exception:  # a record the contract refuses
                    continue
                if event_id in missing:
                    where.setdefault(event_id, (rec.partition, rec.offset))
        enriched: set[str] = set()
        for rec in _read_topic(kafka, kafka.enriched):
            try:
                enriched.update(s.event_id for s in decode_frame(rec.value))
            except ValueError:
                continue
        dead: set[str] = set()
        for rec in _read_topic(kafka, kafka.dlq):
            try:
                dead.add(decode_dead_letter(rec.value).event_id)
            except Exception:
                continue
        group = f"{kafka.topic_prefix}scantrace-worker"
        seen_rows: set[tuple[int, int]] = set()
        for rec in _read_topic(kafka, f"{group}-seen-changelog"):
            value = rec.value
            if value and value[: len(HORIZON_MAGIC)] == HORIZON_MAGIC:
                width = value[len(HORIZON_MAGIC)]
                rows = np.frombuffer(value[len(HORIZON_MAGIC) + 1 :], dtype="<i8")
                rows = rows.reshape(-1, width)
                seen_rows.update(zip(rows[:, 0].tolist(), rows[:, 1].tolist(), strict=True))
        lost = sorted(missing)
        hashes = hash_keys(lost)
        in_seen = {e for e, h in zip(lost, hashes.tolist(), strict=True) if tuple(h) in seen_rows}
        admin = _admin(kafka)
        try:
            committed = {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in _group_offsets(admin, group).items()
            }
        finally:
            admin.close()
        by_partition: dict[int, list[int]] = {}
        for event_id in lost:
            if event_id in where:
                by_partition.setdefault(where[event_id][0], []).append(where[event_id][1])
        lines.append(
            f"lost scans: {len(lost)}; not in scans.raw: {len(set(lost) - set(where))}; in "
            f"scans.enriched: {len(enriched & missing)}; in scans.dlq: {len(dead & missing)}; "
            f"in the seen changelog: {len(in_seen)}"
        )
        for partition, offsets in sorted(by_partition.items()):
            records = sorted(set(offsets))
            lines.append(
                f"  scans.raw[{partition}]: {len(offsets)} lost in {len(records)} records, "
                f"offsets {records[:8]}{' ...' if len(records) > 8 else ''} "
                f"(last {records[-1]}); committed {committed.get((kafka.raw, partition))}"
            )
        lines.append(
            "worker group committed: "
            + ", ".join(f"{t}[{p}]={o}" for (t, p), o in sorted(committed.items()))
        )
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        lines.append(f"could not trace the lost scans: {exc!r}")
    try:
        lines.append(f"worker counters: {worker_counters(run)}")
    except Exception as exc:
        lines.append(f"could not read the worker counters: {exc!r}")
    return "\n".join(lines)


def start_pipeline(
    cluster: Cluster, tmp_path: Path, ch: ClickHouseSettings | None = None, **options: float
) -> tuple[Run, list[str]]:
    """The pipeline run on the cluster with topics of a fresh prefix and a fresh database
    (or `ch`), the premises published first: (the run, started; the premises ids)."""
    kafka = cluster.kafka(f"f{uuid.uuid4().hex[:8]}.")
    ensure_topics(kafka)
    ch = ch or cluster.database(f"f_{uuid.uuid4().hex[:10]}")
    premises = publish_premises(kafka)
    run = Run(kafka, ch, tmp_path / "logs", cluster.settings.state_dir, **options)  # type: ignore[arg-type]
    return run.start(), premises


def check_exactly_once(run: Run, ledger: Ledger, cluster: Cluster | None = None) -> None:
    """`assert_exactly_once` over every shard of `cluster` (None: the run's one database),
    the run's log tails in the failure; the run is stopped either way."""
    shards = [run.clickhouse]
    if cluster is not None:
        shards = [
            ClickHouseSettings(url=f"clickhouse://127.0.0.1:{p}/{run.clickhouse.database}")
            for p in cluster.shard_ports()
        ]
    try:
        assert_exactly_once(run.clickhouse, ledger, run.kafka, run, shards)
    except AssertionError as exc:
        raise AssertionError(f"{run.log_tails()}\n{exc}") from None
    finally:
        run.stop()


def publish_premises(kafka: KafkaSettings, n: int = 300) -> list[str]:
    premises = synth.generate_premises(11, n)
    publish_registry(kafka, premises)
    return [p.premises_id for p in premises]


def leader_counts(kafka: KafkaSettings) -> dict[int, int]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka.kafka_python_config())
    try:
        (raw,) = topic_states(admin, [kafka.raw])
    finally:
        admin.close()
    counts: dict[int, int] = {}
    for p in raw.partitions:
        counts[p.leader] = counts.get(p.leader, 0) + 1
    return counts


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
