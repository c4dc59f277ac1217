"""The premises registry: CSV in (validated, line by line), the compacted `premises` topic
as the registry, CSV out.

An import publishes only what changed: it first reads the topic to its end (the latest
record per premises_id wins), then publishes each new or changed row with `version` =
the import time in ms; an unchanged row is not published again, so re-importing a file
changes nothing. Records are keyed by premises_id with Kafka's default (murmur2)
partitioner, the same partitions as the scans of that premises.

CSV: UTF-8 (a BOM is accepted), the columns of `ingest.premises.CSV_COLUMNS` in any
order. Exports are safe to open in a spreadsheet: a text cell starting with = + - @ or a
tab gets a leading apostrophe, which the import removes again (a round trip is exact).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TextIO

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.contract import MAX_ID_LEN, now_ms
from ingest.errors import InvalidInput, NotFound, ServiceUnavailable, TransientError
from ingest.kafka_settings import KafkaSettings
from ingest.premises import CATEGORIES, CSV_COLUMNS, Premises, decode_premises, encode_premises

log = logging.getLogger(__name__)

REQUIRED: Final = ("premises_id", "name", "category", "district")
TEXT_COLUMNS: Final = ("premises_id", "name", "category", "district", "ward", "agency", "address")
MAX_TEXT_LEN: Final = 1000
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


class RegistrySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCANTRACE_", env_nested_delimiter="__", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class RegistryFileError(InvalidInput):
    """The file as a whole cannot be read (encoding, header): no row is looked at."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str  # missing_field, unknown_category, bad_coordinates, duplicate_id, ...
    field: str | None
    detail: str

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"line {self.line}: {self.reason}{where}: {self.detail}"


@dataclass(slots=True)
class ParsedRegistry:
    rows: list[tuple[int, Premises]] = field(default_factory=list)  # (line, premises)
    errors: list[RowError] = field(default_factory=list)
    data_rows: int = 0

    @property
    def invalid_lines(self) -> int:
        return len({e.line for e in self.errors})


@dataclass(slots=True)
class ImportPlan:
    new: list[Premises] = field(default_factory=list)
    updated: list[Premises] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> list[Premises]:
        return [*self.new, *self.updated]


# -- CSV -------------------------------------------------------------------------------


def _unescape(value: str) -> str:
    if len(value) > 1 and value[0] == "'" and value[1] in FORMULA_START:
        return value[1:]
    return value


def _escape(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _coordinate(text: str, name: str, bound: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text[:40]!r} is not a number (use a dot: 11.5647)") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise ValueError(f"{name} {text[:40]!r} is outside -{bound:g}..{bound:g}")
    return value


def _row(line: int, values: Mapping[str, str]) -> tuple[Premises | None, list[RowError]]:
    errors: list[RowError] = []
    text = {c: _unescape(values[c].strip()) for c in TEXT_COLUMNS}
    for name in REQUIRED:
        if not text[name]:
            errors.append(RowError(line, "missing_field", name, f"{name} is required"))
    for name in TEXT_COLUMNS:
        value = text[name]
        if len(value) > MAX_TEXT_LEN:
            errors.append(
                RowError(line, "too_long", name, f"{len(value)} > {MAX_TEXT_LEN} characters")
            )
        elif value and not value.isprintable():
            errors.append(RowError(line, "bad_chars", name, "control or non-printable characters"))
    premises_id = text["premises_id"]
    if len(premises_id) > MAX_ID_LEN:
        errors.append(
            RowError(
                line, "id_too_long", "premises_id", f"{len(premises_id)} > {MAX_ID_LEN} characters"
            )
        )
    category = text["category"]
    if category and category not in CATEGORIES:
        errors.append(
            RowError(
                line,
                "unknown_category",
                "category",
                f"{category[:40]!r}; one of {', '.join(sorted(CATEGORIES))}",
            )
        )
    lat_text, lon_text = values["lat"].strip(), values["lon"].strip()
    lat = lon = None
    if bool(lat_text) != bool(lon_text):
        errors.append(
            RowError(
                line,
                "bad_coordinates",
                "lat" if not lat_text else "lon",
                "give both lat and lon, or neither",
            )
        )
    elif lat_text:
        try:
            lat = _coordinate(lat_text, "lat", 90)
            lon = _coordinate(lon_text, "lon", 180)
        except ValueError as exc:
            name = "lat" if str(exc).startswith("lat") else "lon"
            errors.append(RowError(line, "bad_coordinates", name, str(exc)))
    if errors:
        return None, errors
    premises = Premises(
        premises_id=premises_id,
        name=text["name"],
        category=category,
        district=text["district"],
        ward=text["ward"],
        agency=text["agency"],
        address=text["address"],
        lat=lat,
        lon=lon,
    )
    return premises, []


def parse_registry_csv(text: str) -> ParsedRegistry:
    """Every row checked; errors carry the file's line numbers (header = line 1). A
    premises_id used on several rows makes each of those rows invalid."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RegistryFileError(f"line 1: {exc}") from None
    if header is None:
        raise RegistryFileError(
            "the file is empty (expected a header: " + ",".join(CSV_COLUMNS) + ")"
        )
    header = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    doubled = sorted({h for h in header if header.count(h) > 1})
    if missing or unknown or doubled:
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(unknown)}" if unknown else "",
        ]
        parts.append(f"repeated {', '.join(doubled)}" if doubled else "")
        raise RegistryFileError(
            f"line 1: header {'; '.join(p for p in parts if p)} (expected {','.join(CSV_COLUMNS)})"
        )
    result = ParsedRegistry()
    seen: dict[str, list[int]] = {}
    previous_end = reader.line_num
    while True:
        try:
            record = next(reader, None)
        except csv.Error as exc:
            result.errors.append(RowError(previous_end + 1, "bad_csv", None, str(exc)))
            break  # the csv module cannot resynchronise after a broken quote
        if record is None:
            break
        line = previous_end + 1
        previous_end = reader.line_num
        if not record or all(not v.strip() for v in record):
            continue  # blank line
        result.data_rows += 1
        if len(record) != len(header):
            result.errors.append(
                RowError(
                    line, "wrong_field_count", None, f"{len(record)} fields, expected {len(header)}"
                )
            )
            continue
        premises, errors = _row(line, dict(zip(header, record, strict=True)))
        result.errors.extend(errors)
        if premises is not None:
            result.rows.append((line, premises))
            seen.setdefault(premises.premises_id, []).append(line)
    doubled_ids = {pid: lines for pid, lines in seen.items() if len(lines) > 1}
    if doubled_ids:
        for pid, lines in doubled_ids.items():
            for line in lines:
                others = ", ".join(str(x) for x in lines if x != line)
                result.errors.append(
                    RowError(line, "duplicate_id", "premises_id", f"{pid!r} also on line {others}")
                )
        result.rows = [(line, p) for line, p in result.rows if p.premises_id not in doubled_ids]
    result.errors.sort(key=lambda e: e.line)
    return result


def load_registry_csv(path: Path) -> ParsedRegistry:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RegistryFileError(
            f"line {line}: not UTF-8 (byte {exc.start}); save the file as UTF-8"
        ) from None
    return parse_registry_csv(text)


def write_registry_csv(records: Iterable[Premises], out: TextIO) -> int:
    """CSV with the header `CSV_COLUMNS`, sorted by premises_id; returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for p in sorted(records, key=lambda p: p.premises_id):
        writer.writerow(
            [
                *(_escape(getattr(p, c)) for c in TEXT_COLUMNS),
                "" if p.lat is None else repr(p.lat),
                "" if p.lon is None else repr(p.lon),
            ]
        )
        count += 1
    return count


# -- diff ------------------------------------------------------------------------------


def same_content(a: Premises, b: Premises) -> bool:
    return replace(a, version=0) == replace(b, version=0)


def plan_import(
    rows: Iterable[Premises], current: Mapping[str, Premises], version: int
) -> ImportPlan:
    """Which rows are new, which changed (both get `version`, later than the one they
    replace), and how many are unchanged (not published again)."""
    plan = ImportPlan()
    for p in rows:
        old = current.get(p.premises_id)
        if old is None:
            plan.new.append(replace(p, version=version))
        elif same_content(old, p):
            plan.unchanged += 1
        else:
            plan.updated.append(replace(p, version=max(version, old.version + 1)))
    return plan


# -- Kafka -----------------------------------------------------------------------------


def read_registry(kafka: KafkaSettings, timeout_s: float = 60.0) -> dict[str, Premises]:
    """The registry as of now: the premises topic read to its end, latest record per key."""
    consumer = KafkaConsumer(
        **kafka.kafka_python_config(),
        client_id="scantrace-registry",
        group_id=None,
        enable_auto_commit=False,
    )
    registry: dict[str, Premises] = {}
    undecodable = 0
    try:
        partitions = _partitions(consumer, kafka.premises)
        tps = [TopicPartition(kafka.premises, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"reading {kafka.premises} took over {timeout_s:g} s")
            for tp, messages in consumer.poll(timeout_ms=500).items():
                for msg in messages:
                    if msg.offset >= end[tp]:
                        continue
                    key = msg.key.decode("utf-8", "replace") if msg.key else None
                    if msg.value is None:
                        if key is not None:
                            registry.pop(key, None)  # tombstone
                        continue
                    try:
                        record = decode_premises(msg.value)
                    except Exception:  # a record we cannot read is skipped, and counted
                        undecodable += 1
                        continue
                    registry[record.premises_id] = record
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
    finally:
        consumer.close()
    if undecodable:
        log.warning("%d undecodable records in %s were skipped", undecodable, kafka.premises)
    return registry


def _partitions(consumer: KafkaConsumer, topic: str, wait_s: float = 5.0) -> set[int]:
    """The topic's partitions; a topic created a moment ago may need a metadata refresh."""
    deadline = time.monotonic() + wait_s
    while True:
        partitions: set[int] | None = consumer.partitions_for_topic(topic)
        if partitions:
            return partitions
        if time.monotonic() > deadline:
            raise NotFound(
                f"topic {topic} does not exist",
                hint="`scantrace services up` creates the topics of the local services",
            )
        consumer.topics()  # forces a metadata refresh
        time.sleep(0.2)


def publish_registry(
    kafka: KafkaSettings,
    records: Sequence[Premises],
    timeout_s: float = 60.0,
    acknowledged: Callable[[int], None] | None = None,
) -> int:
    """Publish to the premises topic keyed by premises_id; returns the count acknowledged.
    Raises `TransientError` if Kafka did not acknowledge every record. `acknowledged(n)`
    hears how many are acknowledged so far while they are (a progress bar)."""
    if not records:
        return 0
    producer = KafkaProducer(
        **kafka.kafka_python_config(),
        client_id="scantrace-registry",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        compression_type="gzip",
    )
    try:
        futures = [
            producer.send(kafka.premises, key=p.premises_id.encode(), value=encode_premises(p))
            for p in records
        ]
        if acknowledged is not None:
            _follow(futures, acknowledged, time.monotonic() + timeout_s)
        producer.flush(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)
    failed = [f for f in futures if not f.succeeded()]
    if failed:
        first = failed[0].exception
        raise TransientError(
            f"{len(failed)} of {len(records)} premises not acknowledged by Kafka: {first}"
        )
    return len(futures)


def _follow(futures: Sequence[Any], acknowledged: Callable[[int], None], deadline: float) -> None:
    """Call `acknowledged` with the count of finished sends until all are, or the deadline."""
    while True:
        done = sum(1 for f in futures if f.is_done)
        acknowledged(done)
        if done == len(futures) or time.monotonic() > deadline:
            return
        time.sleep(0.1)


@dataclass(frozen=True, slots=True)
class ImportResult:
    data_rows: int
    invalid: int
    new: int
    updated: int
    unchanged: int
    published: int
    version: int


def import_registry(
    kafka: KafkaSettings,
    parsed: ParsedRegistry,
    *,
    dry_run: bool = False,
    version: int | None = None,
    acknowledged: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Publish the valid rows of `parsed` that are new or changed (the caller decides
    whether invalid rows stop the import). `acknowledged(done, total)` follows the
    publishing."""
    current = read_registry(kafka)
    at = version if version is not None else now_ms()
    plan = plan_import((p for _, p in parsed.rows), current, at)
    total = len(plan.changes)
    published = (
        0
        if dry_run
        else publish_registry(
            kafka,
            plan.changes,
            acknowledged=None if acknowledged is None else lambda n: acknowledged(n, total),
        )
    )
    return ImportResult(
        data_rows=parsed.data_rows,
        invalid=parsed.invalid_lines,
        new=len(plan.new),
        updated=len(plan.updated),
        unchanged=plan.unchanged,
        published=published,
        version=at,
    )
