"""`scantrace demo`: the main job on the local services, printing what it did.

Publishes synthetic scans to `scans.raw` through the real broker, reads them back,
stores them in ClickHouse and reads them back from there.
"""

from __future__ import annotations

import time
import uuid

import click
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.codec import decode_msgpack, encode_msgpack
from ingest.contract import ScanEvent, now_ms
from ingest.kafka_settings import KafkaSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.settings import SinkSettings


def _publish(kafka: KafkaSettings, events: list[ScanEvent]) -> dict[int, tuple[int, int]]:
    """Send and wait for every acknowledgement; returns partition -> (first, last) offset."""
    producer = KafkaProducer(bootstrap_servers=kafka.servers(), acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(kafka.raw, key=e.premises_id.encode(), value=encode_msgpack(e))
            for e in events
        ]
        producer.flush()
        spans: dict[int, tuple[int, int]] = {}
        for f in futures:
            md = f.get(timeout=30)
            lo, hi = spans.get(md.partition, (md.offset, md.offset))
            spans[md.partition] = (min(lo, md.offset), max(hi, md.offset))
        return spans
    finally:
        producer.close()


def _read_back(kafka: KafkaSettings, spans: dict[int, tuple[int, int]]) -> list[ScanEvent]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers(), enable_auto_commit=False)
    try:
        parts = [TopicPartition(kafka.raw, p) for p in spans]
        consumer.assign(parts)
        for tp in parts:
            consumer.seek(tp, spans[tp.partition][0])
        out: list[ScanEvent] = []
        deadline = time.monotonic() + 30
        remaining = {p: hi for p, (_, hi) in spans.items()}
        while remaining and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset <= spans[tp.partition][1]:
                        out.append(decode_msgpack(r.value))
                    if r.offset >= remaining.get(tp.partition, -1):
                        remaining.pop(tp.partition, None)
        return out
    finally:
        consumer.close()


def _store(ch: ClickHouseSettings, events: list[ScanEvent]) -> None:
    client = connect(ch)
    try:
        stamp = now_ms()
        client.execute(
            "INSERT INTO scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,"
            " received_at, processed_at, premises_name, category, district, ward, agency,"
            " dwell_minutes) VALUES",
            [
                (
                    e.event_id,
                    e.person_id,
                    e.premises_id,
                    e.scanned_at_dt,
                    e.kind,
                    e.gateway_id,
                    e.scanned_at_dt,
                    e.scanned_at_dt.fromtimestamp(stamp / 1000, e.scanned_at_dt.tzinfo),
                    "Chợ Phan Rang",
                    "market",
                    "Phan Rang-Tháp Chàm",
                    "Phường Thanh Sơn",
                    "UBND thành phố",
                    45,
                )
                for e in events
            ],
            settings={"insert_deduplication_token": events[0].event_id},
        )
    finally:
        client.disconnect()


@click.command()
@click.option("--scans", default=100, show_default=True, help="How many scans to send")
def demo(scans: int) -> None:
    """Send scans through the real broker into ClickHouse and read them back."""
    settings = SinkSettings()
    run = uuid.uuid4().hex[:8]
    base = now_ms() - 60_000
    events = [
        ScanEvent(
            event_id=f"demo-{run}-{i}",
            person_id=f"P{i % 37:05d}",
            premises_id=f"NT-{i % 5:06d}",
            scanned_at=base + i * 1000,
            gateway_id="demo",
        )
        for i in range(scans)
    ]
    t0 = time.perf_counter()
    spans = _publish(settings.kafka, events)
    click.echo(
        f"published {len(events)} scans to {settings.kafka.raw} at {settings.kafka.bootstrap} "
        f"(partitions {sorted(spans)}), every one acknowledged"
    )
    back = _read_back(settings.kafka, spans)
    click.echo(f"read back {len(back)} scans from Kafka")
    _store(settings.clickhouse, back)
    client = connect(settings.clickhouse)
    try:
        rows = client.execute(
            "SELECT event_id, person_id, premises_id, premises_name, scanned_at, kind FROM scans"
            " WHERE event_id LIKE %(p)s ORDER BY scanned_at",
            {"p": f"demo-{run}-%"},
        )
    finally:
        client.disconnect()
    click.echo(f"ClickHouse holds {len(rows)} of them ({time.perf_counter() - t0:.2f}s end to end)")
    if rows:
        e, p, prem, name, at, kind = rows[0]
        click.echo(f"first: event {e} person {p} {kind} at {prem} ({name}) {at.isoformat()}")
    if len(rows) != len(events):
        raise click.ClickException(f"expected {len(events)} rows, found {len(rows)}")
