"""`scantrace premises import/export` against the real broker: validation stops the
import, re-importing changes nothing, a changed row is one update, export round-trips."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kafka import KafkaConsumer, TopicPartition

from ingest.kafka_settings import KafkaSettings
from ingest.partitioning import partition_for
from ingest.premises import CSV_COLUMNS, decode_premises
from ingest.registry import parse_registry_csv, read_registry
from scantrace.cli import main

HEADER = ",".join(CSV_COLUMNS)
ROWS = [
    "NT-0001,Chợ Phan Rang,market,Phan Rang - Tháp Chàm,Phường Thanh Sơn,BQL chợ,"
    '"1 Thống Nhất, P. Thanh Sơn",11.5647,108.9886',
    "NT-0002,Trường THPT Chu Văn An,school,Ninh Hải,Khánh Hải,Sở GD&ĐT,,11.6,109.1",
    "NT-0003,Bến xe Ninh Thuận,bus_station,Phan Rang - Tháp Chàm,Phủ Hà,,,,",
    "NT-0004,=SUM(A1:A9) Quán cà phê,restaurant,Ninh Sơn,Tân Sơn,,,-11.25,108.5",
]


def csv_file(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def cli(kafka: KafkaSettings, *args: str) -> Result:
    env = {
        "SCANTRACE_KAFKA__BOOTSTRAP": kafka.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "SCANTRACE_KAFKA__PARTITIONS": str(kafka.partitions),
    }
    # through the entry point, which turns failures into one line and an exit code
    return CliRunner().invoke(main, ["premises", *args], env=env, catch_exceptions=False)


def topic_records(kafka: KafkaSettings) -> list[tuple[int, bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers(), group_id=None)
    try:
        tps = [TopicPartition(kafka.premises, p) for p in range(kafka.partitions)]
        end = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[tuple[int, bytes, bytes]] = []
        deadline = time.monotonic() + 8
        while sum(end.values()) > len(out) and time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=1000).values():
                out.extend((m.partition, m.key, m.value) for m in msgs)
        return out
    finally:
        consumer.close()


def test_import_is_idempotent_and_a_change_is_one_update(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    first = cli(kafka_settings, "import", str(csv_file(tmp_path / "r.csv", *ROWS)))
    assert first.exit_code == 0, first.output
    assert "4 rows: 4 new, 0 updated, 0 unchanged, 0 invalid (skipped); published 4" in first.output
    records = topic_records(kafka_settings)
    assert len(records) == 4
    partitions = list(range(kafka_settings.partitions))
    for partition, key, value in records:
        assert partition == partition_for(key, partitions)  # co-partitioned with the scans
        assert decode_premises(value).premises_id.encode() == key
    registry = read_registry(kafka_settings)
    assert registry["NT-0002"].name == "Trường THPT Chu Văn An"
    assert registry["NT-0004"].name == "=SUM(A1:A9) Quán cà phê"
    versions = {k: p.version for k, p in registry.items()}
    assert all(v > 0 for v in versions.values())

    again = cli(kafka_settings, "import", str(tmp_path / "r.csv"))
    assert again.exit_code == 0, again.output
    assert "0 new, 0 updated, 4 unchanged" in again.output and "published 0" in again.output
    assert len(topic_records(kafka_settings)) == 4

    changed = [*ROWS[:2], ROWS[2].replace("Phủ Hà", "Đạo Long"), ROWS[3]]
    third = cli(kafka_settings, "import", str(csv_file(tmp_path / "r2.csv", *changed)))
    assert third.exit_code == 0, third.output
    assert "0 new, 1 updated, 3 unchanged" in third.output and "published 1" in third.output
    assert len(topic_records(kafka_settings)) == 5
    registry = read_registry(kafka_settings)
    assert registry["NT-0003"].ward == "Đạo Long"
    assert registry["NT-0003"].version > versions["NT-0003"]
    assert registry["NT-0001"].version == versions["NT-0001"]


def test_invalid_rows_stop_the_import_unless_skipped(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    bad = [
        ROWS[0],
        "NT-0005,Karaoke,nightclub,Ninh Sơn,,,,,",
        ROWS[1],
        "NT-0006,Chùa,religious,Bác Ái,,,,95.0,108",
        ROWS[0].replace("Chợ Phan Rang", "Chợ trùng mã"),
        ",Không mã,shop,Thuận Bắc,,,,,",
    ]
    path = csv_file(tmp_path / "bad.csv", *bad)
    result = cli(kafka_settings, "import", str(path))
    assert result.exit_code == 2  # a file's content is wrong: usage (scantrace.exits)
    for line, reason in [(2, "duplicate_id"), (3, "unknown_category"), (5, "bad_coordinates"),
                         (6, "duplicate_id"), (7, "missing_field")]:  # fmt: skip
        assert f"bad.csv:line {line}: {reason}" in result.output
    assert "5 of 6 rows invalid; nothing published" in result.output
    assert topic_records(kafka_settings) == []

    skipped = cli(kafka_settings, "import", "--skip-invalid", str(path))
    assert skipped.exit_code == 0, skipped.output
    assert (
        "6 rows: 1 new, 0 updated, 0 unchanged, 5 invalid (skipped); published 1" in skipped.output
    )
    assert list(read_registry(kafka_settings)) == ["NT-0002"]


def test_dry_run_publishes_nothing(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    result = cli(kafka_settings, "import", "--dry-run", str(csv_file(tmp_path / "r.csv", *ROWS)))
    assert result.exit_code == 0, result.output
    assert "4 new" in result.output and "would publish 4" in result.output
    assert topic_records(kafka_settings) == []


@pytest.mark.parametrize("to_file", [True, False])
def test_export_round_trips(kafka_settings: KafkaSettings, tmp_path: Path, to_file: bool) -> None:
    source = csv_file(tmp_path / "r.csv", *ROWS)
    assert cli(kafka_settings, "import", str(source)).exit_code == 0
    # a later update of one premises: the export has the latest record only
    newer = [ROWS[0].replace("BQL chợ", "Ban quản lý chợ Phan Rang")]
    assert cli(kafka_settings, "import", str(csv_file(tmp_path / "u.csv", *newer))).exit_code == 0
    out = tmp_path / f"export-{uuid.uuid4().hex[:6]}.csv"
    if to_file:
        result = cli(kafka_settings, "export", "--out", str(out))
        text = out.read_text(encoding="utf-8")
    else:
        result = cli(kafka_settings, "export")
        text = result.stdout
    assert result.exit_code == 0
    assert "exported 4 premises" in result.stderr
    assert text.splitlines()[0] == HEADER
    assert "'=SUM(A1:A9)" in text  # safe to open in a spreadsheet
    exported = {p.premises_id: p for _, p in parse_registry_csv(text).rows}
    expected = {p.premises_id: p for _, p in parse_registry_csv(source.read_text()).rows}
    expected["NT-0001"] = parse_registry_csv(HEADER + "\n" + newer[0]).rows[0][1]
    assert exported == expected
    # importing the export changes nothing
    back = tmp_path / "back.csv"
    back.write_text(text, encoding="utf-8")
    again = cli(kafka_settings, "import", str(back))
    assert "4 unchanged" in again.output and "published 0" in again.output
