"""The sink end to end on the real broker and ClickHouse: contents exact, offsets committed,
retries without duplicates, a crash replayed into the same tokens, ClickHouse away."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import store_queries as queries
from kafka import KafkaProducer
from pipeline_kit import committed, end_offsets
from prometheus_client import CollectorRegistry
from sink_kit import enriched

from ingest.contract import now_ms
from ingest.deadletter import DeadLetter, encode_dead_letter
from ingest.kafka_settings import KafkaSettings
from ingest.premises import Premises, encode_premises
from scantrace.services.process import free_port
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.consume_loop import SinkFatal, serve
from sinks.rollup import DAY_MS, local_day
from sinks.settings import SinkOptions, SinkSettings
from sinks.testing import FlakyWriter
from sinks.writer import ClickHouseWriter, ScanWriter

TIMEOUT_S = 90


class Running:
    """`serve` in a thread; `stop()` sets the event, joins, and re-raises its failure."""

    def __init__(self, settings: SinkSettings, writer: ScanWriter | None = None) -> None:
        self.registry = CollectorRegistry()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings, writer), daemon=True)
        self.thread.start()

    def _run(self, settings: SinkSettings, writer: ScanWriter | None) -> None:
        try:
            serve(settings, self.registry, writer=writer, stop=self.stop_event)
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the sink did not stop"
        if self.error is not None:
            raise self.error


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = TIMEOUT_S,
    state: Callable[[], object] = str,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {state()}")


def sink_settings(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, **options: Any
) -> SinkSettings:
    defaults: dict[str, Any] = {
        "group_id": f"sink-{uuid.uuid4().hex[:8]}",
        "batch_rows": 500,
        "batch_seconds": 0.3,
        "rollup_seconds": 0.5,
        "retry_initial_seconds": 0.2,
        "retry_max_seconds": 1.0,
    }
    return SinkSettings(
        kafka=kafka, clickhouse=clickhouse, sink=SinkOptions(**{**defaults, **options})
    )


Scan = tuple[str, str, str, int]  # event_id, person_id, premises_id, scanned_at


def make_scans(n: int, now: int) -> list[Scan]:
    return [
        (f"e{i:05d}", f"u{i % 37}", f"NT-{i % 11:02d}", now - (i % 600) * 60_000) for i in range(n)
    ]


def produce(kafka: KafkaSettings, items: list[tuple[str, bytes | None, bytes | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka.servers(), linger_ms=20)
    try:
        for topic, key, value in items:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def scan_records(
    kafka: KafkaSettings, scans: list[Scan]
) -> list[tuple[str, bytes | None, bytes | None]]:
    return [
        (kafka.enriched, p.encode(), enriched(e, u, p, t, received_at=t + 50))
        for e, u, p, t in scans
    ]


@pytest.fixture
def ch(clickhouse_settings: ClickHouseSettings) -> Iterator[Any]:
    client = connect(clickhouse_settings)
    yield client
    client.disconnect()


def stored(ch: Any) -> tuple[int, int, list[int]]:
    """(distinct scans, dead letters, premises versions) in ClickHouse."""
    scans, dead, versions = ch.execute(
        "SELECT (SELECT uniqExact(event_id) FROM scans), (SELECT count() FROM dead_letters), "
        "(SELECT arraySort(groupArray(version)) FROM premises FINAL)"
    )[0]
    return int(scans), int(dead), list(versions)


def count(ch: Any, sql: str) -> int:
    return int(ch.execute(sql)[0][0])


def test_end_to_end_contents_offsets_rollup_and_metrics(
    kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings, ch: Any
) -> None:
    now = now_ms()
    scans = make_scans(3000, now)
    again = scans[:50]  # delivered twice upstream (at-least-once): two records, one scan
    p1 = Premises("NT-01", "Cho cu", "market", "Phan Rang", version=1)
    p1b = Premises("NT-01", "Cho moi", "market", "Phan Rang", version=2)
    p2 = Premises("NT-02", "Truong", "school", "Ninh Hai", version=1)
    dls = [
        DeadLetter(
            "worker", "bad_timestamp", b"\x01raw", "x", kafka_settings.raw, 0, i, now, f"bad{i}"
        )
        for i in range(3)
    ]
    produce(
        kafka_settings,
        scan_records(kafka_settings, scans + again)
        + [(kafka_settings.enriched, b"zz", b"\xc1 not msgpack")]
        + [
            (kafka_settings.premises, p.premises_id.encode(), encode_premises(p))
            for p in (p1, p2, p1b)
        ]
        + [(kafka_settings.dlq, None, encode_dead_letter(d)) for d in dls],
    )
    port = free_port()
    settings = sink_settings(kafka_settings, clickhouse_settings, metrics_port=port)
    sink = Running(settings)
    try:
        wait_for(
            "every record stored",
            lambda: stored(ch) == (3000, 4, [1, 2]),
            state=lambda: stored(ch),
        )
        wait_for(
            "offsets committed",
            lambda: (
                committed(kafka_settings, settings.sink.group_id) == end_offsets(kafka_settings)
            ),
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert b"scantrace_sink_rows_written_total" in r.read()
    finally:
        sink.stop()

    # scans: exactly the set produced, each once on the read path
    ids = {r[0] for r in ch.execute("SELECT DISTINCT event_id FROM scans")}
    assert ids == {s[0] for s in scans}
    assert ch.execute(*queries.scan_count(now - DAY_MS, now + 1)) == [(3000,)]
    mine = ch.execute(*queries.person_scans("u5", now - DAY_MS, now + 1))
    expected = sorted((t, e) for e, u, _, t in scans if u == "u5")
    assert [(r[3], r[0]) for r in mine] == expected
    # premises: latest version wins; dead letters: the worker's and the sink's own
    assert [(r[0], r[1], r[10]) for r in ch.execute(*queries.premises_current())] == [
        ("NT-01", "Cho moi", 2),
        ("NT-02", "Truong", 1),
    ]
    dead = ch.execute(
        "SELECT stage, reason, topic, event_id FROM dead_letters ORDER BY stage, event_id"
    )
    assert dead == [("sink", "undecodable", kafka_settings.enriched, "")] + [
        ("worker", "bad_timestamp", kafka_settings.raw, f"bad{i}") for i in range(3)
    ]
    # the rollup, against the truth computed here
    truth: dict[tuple[Any, str], tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for e, u, p, t in scans:
        truth[(local_day(t), p)][0].add(e)
        truth[(local_day(t), p)][1].add(u)
    days = sorted({d for d, _ in truth})
    got = {(r[0], r[1]): (r[6], r[7]) for r in ch.execute(*queries.daily(days[0], days[-1]))}
    assert got == {k: (len(v[0]), len(v[1])) for k, v in truth.items()}
    # in = stored + dead-lettered, per topic
    consumed = sink.value("scantrace_sink_records_consumed_total", topic=kafka_settings.enriched)
    assert consumed == 3051
    assert sink.value("scantrace_sink_rows_written_total", table="scans") == 3050
    assert sink.value("scantrace_sink_dead_letters_total", reason="undecodable") == 1
    assert (
        sink.value("scantrace_sink_end_to_end_latency_seconds_count", since="received_at") == 3050
    )
    assert sink.value("scantrace_sink_rollup_days_refreshed_total") >= len(days)


def test_lost_answers_are_retried_and_every_row_lands_once(
    kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings, ch: Any
) -> None:
    scans = make_scans(2000, now_ms())
    produce(kafka_settings, scan_records(kafka_settings, scans))
    flaky = FlakyWriter(ClickHouseWriter(clickhouse_settings), failures=3, after_write=True)
    sink = Running(sink_settings(kafka_settings, clickhouse_settings), flaky)
    try:
        wait_for("2000 scans", lambda: count(ch, "SELECT uniqExact(event_id) FROM scans") == 2000)
        wait_for("resumed", lambda: sink.value("scantrace_sink_paused") == 0 and flaky.failed == 3)
    finally:
        sink.stop()
    assert count(ch, "SELECT count() FROM scans") == 2000  # raw rows: the tokens held
    assert sink.value("scantrace_sink_retries_total") == 3
    assert sink.value("scantrace_sink_insert_failures_total", kind="transient") == 3


class CrashAfterWrite(FlakyWriter):
    """Stores the n-th insert, then dies as if the process was killed before the commit."""

    def __init__(self, inner: ScanWriter, nth: int) -> None:
        super().__init__(inner, failures=0)
        self.calls = 0
        self.nth = nth

    def insert(self, table: str, columns: Any, data: Any, token: str) -> None:
        self.inner.insert(table, columns, data, token)
        self.calls += 1
        if self.calls == self.nth:
            from sinks.writer import WriteError

            raise WriteError("fatal", RuntimeError("killed"), "crash test")


def test_a_crash_between_insert_and_commit_replays_into_the_same_tokens(
    kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings, ch: Any
) -> None:
    scans = make_scans(4000, now_ms())
    produce(kafka_settings, scan_records(kafka_settings, scans))
    # batch_seconds far above a poll round: only full chunks of 200 before the crash
    settings = sink_settings(kafka_settings, clickhouse_settings, batch_rows=200, batch_seconds=5.0)
    crashing = Running(settings, CrashAfterWrite(ClickHouseWriter(clickhouse_settings), nth=3))
    wait_for("the crash", lambda: not crashing.thread.is_alive())
    with pytest.raises(SinkFatal):
        crashing.stop()
    assert count(ch, "SELECT count() FROM scans") == 600  # three chunks of 200 stored ...
    done = committed(kafka_settings, settings.sink.group_id)
    enriched_committed = sum(o for (t, _), o in done.items() if t == kafka_settings.enriched)
    assert enriched_committed < 600  # ... and at least the last one not committed
    again = Running(settings)  # the same group: reads from the last commit
    try:
        wait_for("4000 scans", lambda: count(ch, "SELECT uniqExact(event_id) FROM scans") == 4000)
    finally:
        again.stop()
    # the replayed chunks had the same boundaries, hence the same tokens: no second copy
    assert count(ch, "SELECT count() FROM scans") == 4000


class Proxy:
    """A TCP forwarder to ClickHouse that can be started late: ClickHouse 'unreachable'."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self.target = target
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []

    def start(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self.server is not None
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in [*self.conns, *([self.server] if self.server else [])]:
            with contextlib.suppress(OSError):
                s.close()


def test_clickhouse_unreachable_pauses_retries_and_resumes(
    kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings, ch: Any
) -> None:
    host, real_port, database, _, _ = clickhouse_settings.parts()
    proxy = Proxy(free_port(), (host, real_port))
    away = clickhouse_settings.model_copy(
        update={"url": f"clickhouse://{host}:{proxy.port}/{database}"}
    )
    scans = make_scans(1500, now_ms())
    produce(kafka_settings, scan_records(kafka_settings, scans))
    sink = Running(sink_settings(kafka_settings, away))
    try:
        wait_for("a pause", lambda: sink.value("scantrace_sink_paused") == 1)
        wait_for("retries", lambda: sink.value("scantrace_sink_retries_total") >= 2)
        assert count(ch, "SELECT count() FROM scans") == 0
        proxy.start()
        wait_for("1500 scans", lambda: count(ch, "SELECT uniqExact(event_id) FROM scans") == 1500)
        wait_for("resumed", lambda: sink.value("scantrace_sink_paused") == 0)
    finally:
        sink.stop()
        proxy.close()
    assert count(ch, "SELECT count() FROM scans") == 1500
    assert sink.value("scantrace_sink_insert_failures_total", kind="transient") >= 2


def test_rows_clickhouse_refuses_are_dead_lettered_alone(
    kafka_settings: KafkaSettings, clickhouse_settings: ClickHouseSettings, ch: Any
) -> None:
    now = now_ms()
    scans = make_scans(300, now)
    good = scan_records(kafka_settings, scans)
    wire = msgpack.unpackb(enriched("bad-kind", "u1", "NT-01", now))
    bad_kind = msgpack.packb({**wire, "kind": "teleport"})  # the sink's own type check
    bad_dwell = msgpack.packb({**wire, "event_id": "bad-dwell", "dwell_minutes": -5})  # UInt16
    key = b"NT-01"
    records = [*good[:100], (kafka_settings.enriched, key, bad_kind), *good[100:]]
    produce(kafka_settings, [*records, (kafka_settings.enriched, key, bad_dwell)])
    sink = Running(sink_settings(kafka_settings, clickhouse_settings))
    try:
        wait_for(
            "300 scans and 2 dead letters",
            lambda: (
                count(ch, "SELECT uniqExact(event_id) FROM scans") == 300
                and count(ch, "SELECT count() FROM dead_letters") == 2
            ),
        )
    finally:
        sink.stop()
    dead = ch.execute("SELECT stage, reason, event_id, raw FROM dead_letters ORDER BY event_id")
    assert [(d[0], d[1], d[2]) for d in dead] == [
        ("sink", "clickhouse_rejected", "bad-dwell"),  # within the struct's types: ClickHouse's
        ("sink", "invalid", "bad-kind"),
    ]
    assert [d[3] for d in dead] == [bad_dwell, bad_kind]
    assert sink.value("scantrace_sink_insert_failures_total", kind="terminal") >= 1
