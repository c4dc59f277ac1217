"""Latency of `trace` (not a test): `python -m bench trace --rows 10000000`.

Generates the rows server-side (INSERT ... SELECT FROM numbers(), one insert per day) in a
database of its own, at the density of the synthetic province (`scantrace.synth`, Ninh
Thuan: 115,000 app users, 3,000 premises, about 10 M scans in 28 days). Persons AND
premises scale with --rows: N rows are round(N / 10 M) provinces side by side, each
person visiting only the premises of their own province, so 100 M rows are ten provinces
(1.15 M persons, 30,000 premises) with the same scans per person-day (about 3.1), per
premises-day (about 119 on average) and the same popularity skew (the busiest 1% of a
province's premises take about 12% of its scans) and hourly profile (morning and evening
peaks, Asia/Ho_Chi_Minh). A quarter of the visits also check out 20-120 minutes later; 28
days ending today; enriched columns (premises name, category, district, ward, agency,
dwell time) as the sink writes them. `--shape dense` reproduces the earlier shape: a
fixed 3,000 premises and 115k (up to 20 M rows) or 500k persons, i.e. about 1,200 scans
per premises-day and a median depth-1 answer of about 54k contacts at 100 M rows.

Then it traces at least 50 random cases (persons with scans; period: the 14 days up to
a random day) under both rules at depth 1 and 2, exactly as `scantrace trace` does
(timeline + F1 [+ F2] queries), and prints p50 / p99 / max per rule and depth, the
median, p90 and largest answer, and the load average over the run. Under overlap every case
is traced with and without the cap at the next scan elsewhere (`cap_at_next_scan`), in
alternating order, and the two latencies are compared as ratios of the same run.

Run it on a services instance of its own:
    SCANTRACE_SERVICES__STATE_DIR=/tmp/bench-trace2 scantrace services up
    SCANTRACE_SERVICES__STATE_DIR=/tmp/bench-trace2 python -m bench trace --rows 10000000
    SCANTRACE_SERVICES__STATE_DIR=/tmp/bench-trace2 scantrace services down
The data is kept so a second run with the same --rows (and shape) skips the generation;
`--drop` removes it, `--generate-only` stops after it, `--resume-day N` finishes an
interrupted one. `--depths 1` measures depth 1 only; `--depth2-cases N` traces fewer cases
at depth 2: an F2 answer covers most of the case's province (0.7-1 M person-premises
rows), so depth 2 is dominated by the answer's size; `--rules` picks the rules.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bench.common import quantile
from scantrace.services import manager
from scantrace.settings import ServicesSettings
from scantrace.synth import HOURLY_PROFILE
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.migrations import migrate
from tracing.rules import Rule
from tracing.runner import ClickHouseRunner
from tracing.sql import TraceTables
from tracing.trace import trace_person

DAY_MS = 86_400_000
DAYS = 28
# One synthetic province (`scantrace.synth`, Ninh Thuan): 115,000 app users, 3,000
# premises, about 10 M scans in 28 days (3.1 scans per person per day, about 119 per
# premises per day on average).
PROVINCE_ROWS = 10_000_000
PROVINCE_PERSONS = 115_000
PROVINCE_PREMISES = 3000


@dataclass(frozen=True, slots=True)
class Shape:
    """Who scans where: `provinces` provinces side by side, each with
    `premises_per_province` premises; person n lives in province n % provinces and only
    visits premises there."""

    name: str
    persons: int
    provinces: int
    premises_per_province: int

    @property
    def premises(self) -> int:
        return self.provinces * self.premises_per_province


def shape_for(rows: int, name: str = "province", persons: int = 0) -> Shape:
    """`province`: the province's density at any size (100 M rows = ten provinces: 1.15 M
    persons, 30,000 premises, the same scans per person-day and per premises-day).
    `dense`: the earlier shape, a fixed 3,000 premises and 115k (up to 20 M rows) or 500k
    persons, so scans per premises-day grow with the row count (about 1,200 at 100 M)."""
    if name == "dense":
        return Shape(
            "dense", persons or (115_000 if rows <= 20_000_000 else 500_000), 1, PROVINCE_PREMISES
        )
    provinces = max(1, round(rows / PROVINCE_ROWS))
    return Shape("province", persons or PROVINCE_PERSONS * provinces, provinces, PROVINCE_PREMISES)


CATEGORY_SHARE = {
    "shop": 30, "restaurant": 15, "office": 12, "school": 8, "religious": 5,
    "accommodation": 4, "market": 4, "factory": 3, "hospital": 3, "other": 3,
    "supermarket": 2, "tourist_site": 2, "bus_station": 1, "mall": 1,
}  # fmt: skip
DISTRICTS = (
    "Phan Rang-Tháp Chàm", "Bác Ái", "Ninh Hải", "Ninh Phước", "Ninh Sơn", "Thuận Bắc",
    "Thuận Nam",
)  # fmt: skip


def _array(values: list[str] | list[int] | tuple[str, ...]) -> str:
    return "[" + ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values) + "]"


def generate(
    client: object,
    db: str,
    rows: int,
    shape: Shape,
    seed: int,
    first_day: int = 0,
) -> None:
    from ingest.premises import DWELL_MINUTES

    hours = [h for h, w in enumerate(HOURLY_PROFILE) for _ in range(round(w * 10))]
    cats = [c for c, share in CATEGORY_SHARE.items() for _ in range(share)]
    dwell_keys = list(DWELL_MINUTES)
    visits_per_day = round(rows / DAYS / 1.25)  # a quarter of visits add a check-out
    today = datetime.now(tz=UTC).date()
    first = datetime(today.year, today.month, today.day, tzinfo=UTC) - timedelta(days=DAYS - 1)
    for day in range(first_day, DAYS):
        day_start = int((first + timedelta(days=day)).timestamp() * 1000) - 7 * 3_600_000
        lo = day * visits_per_day
        sql = f"""
INSERT INTO `{db}`.scans (event_id, person_id, premises_id, scanned_at, kind, gateway_id,
    received_at, processed_at, premises_name, category, district, ward, agency, dwell_minutes)
WITH {_array(hours)} AS hours, {_array(cats)} AS cats, {_array(list(DISTRICTS))} AS districts,
     {_array(dwell_keys)} AS dwell_keys, {_array(list(DWELL_MINUTES.values()))} AS dwell_values
SELECT
    lower(hex(cityHash64(v, {seed}, 9, out))) || lower(hex(cityHash64(v, 10, out))) AS event_id,
    'P' || lower(hex(cityHash64(person_no, {seed}))) AS person_id,
    'NT-' || leftPad(toString(premises_no + 1), 6, '0') AS premises_id,
    fromUnixTimestamp64Milli(toInt64(t), 'UTC') AS scanned_at,
    if(out = 1, 'checkout', 'checkin') AS kind,
    'gw-' || toString(premises_no % 16) AS gateway_id,
    scanned_at + toIntervalSecond(1 + r % 30) AS received_at,
    received_at + toIntervalMillisecond(200) AS processed_at,
    'Premises ' || toString(premises_no + 1) AS premises_name,
    cats[1 + cityHash64(premises_no, 3) % length(cats)] AS category,
    districts[1 + premises_no % 7] AS district,
    'Ward ' || toString(premises_no % 61) AS ward,
    'Agency ' || toString(premises_no % 13) AS agency,
    toUInt16(transform(category, dwell_keys, dwell_values, 30)) AS dwell_minutes
FROM (
    SELECT number AS v, cityHash64(number, {seed}) AS r,
           r % {shape.persons} AS person_no,
           -- a person visits the premises of their own province; within a province the
           -- popularity skew: the busiest 1% of premises take about 12% of the scans
           (person_no % {shape.provinces}) * {shape.premises_per_province}
               + toUInt32(floor({shape.premises_per_province}
                                * pow((cityHash64(number, 2) % 1000000) / 1e6, 2.2)))
               AS premises_no,
           {day_start} + hours[1 + cityHash64(number, 4) % length(hours)] * 3600000
               + cityHash64(number, 5) % 3600000 AS t_in,
           arrayJoin(if(cityHash64(number, 6) % 4 = 0, [0, 1], [0])) AS out,
           t_in + out * (20 + cityHash64(number, 7) % 100) * 60000 AS t
    FROM numbers({lo}, {visits_per_day})
)"""
        client.execute(  # type: ignore[attr-defined]
            sql,
            settings={
                "min_insert_block_size_rows": 4_000_000,
                "min_insert_block_size_bytes": 0,
                "max_insert_threads": 2,
            },
        )
        print(f"  day {day + 1}/{DAYS} inserted", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument(
        "--shape",
        choices=("province", "dense"),
        default="province",
        help="province (default): persons and premises scale with --rows at one province's"
        " density; dense: the earlier fixed 3,000 premises",
    )
    ap.add_argument("--persons", type=int, default=0, help="override the shape's persons")
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--drop", action="store_true", help="drop the bench database at the end")
    ap.add_argument("--generate-only", action="store_true", help="stop after generating")
    ap.add_argument("--depths", default="1,2", help="depths to measure, e.g. 1 or 1,2")
    ap.add_argument(
        "--rules", default="scan-window,overlap", help="rules to measure, comma-separated"
    )
    ap.add_argument(
        "--depth2-cases",
        type=int,
        default=0,
        help="cases at depth 2 (default: --cases); F2 answers reach most of the population",
    )
    ap.add_argument(
        "--resume-day", type=int, default=0, help="generate days N..28 into existing data"
    )
    ap.add_argument("--json", dest="json_out", default="", help="write the figures here")
    ap.add_argument(
        "--no-cap-compare",
        action="store_true",
        help="overlap only with the cap (the default rule), not also without it",
    )
    args = ap.parse_args()
    shape = shape_for(args.rows, args.shape, args.persons)
    ends = manager.apply_environment(ServicesSettings())
    url = ends.clickhouse_native if ends else ""
    if not url:
        raise SystemExit("no services: SCANTRACE_SERVICES__STATE_DIR=... scantrace services up")
    db = (
        f"bench_trace_{args.rows}" if shape.name == "province" else f"bench_trace_dense_{args.rows}"
    )
    settings = ClickHouseSettings(url=f"{url}/{db}")
    migrate(settings)
    client = connect(settings)
    stored = client.execute("SELECT count() FROM scans")[0][0]
    if args.resume_day:
        generate(client, db, args.rows, shape, args.seed, args.resume_day)
        stored = client.execute("SELECT count() FROM scans")[0][0]
    if stored == 0:
        print(
            f"generating about {args.rows:,} scans of {shape.persons:,} persons at"
            f" {shape.premises:,} premises ({shape.name} shape) in {db}",
            flush=True,
        )
        started = time.perf_counter()
        generate(client, db, args.rows, shape, args.seed)
        print(f"generated in {time.perf_counter() - started:.0f} s", flush=True)
        stored = client.execute("SELECT count() FROM scans")[0][0]
    parts, size = client.execute(
        "SELECT count(), sum(bytes_on_disk) FROM system.parts"
        " WHERE database = currentDatabase() AND active"
    )[0]
    print(f"{stored:,} scans stored, {parts} active parts, {size / 1e9:.2f} GB on disk")
    per_day = client.execute(
        "SELECT avg(n), median(n), max(n) FROM (SELECT count() AS n FROM scans"
        " GROUP BY premises_id, toDate(scanned_at, 'Asia/Ho_Chi_Minh'))"
    )[0]
    print(
        f"shape {shape.name}: {shape.persons:,} persons, {shape.premises:,} premises;"
        f" scans per premises-day: mean {per_day[0]:.0f}, median {per_day[1]:.0f},"
        f" max {per_day[2]:,}",
        flush=True,
    )
    if args.generate_only:
        return
    runner = ClickHouseRunner(settings, client)
    tables = TraceTables()
    print(f"tables: {tables}")
    rng = random.Random(args.seed)
    candidates = [
        r[0]
        for r in client.execute(
            "SELECT DISTINCT person_id FROM scans WHERE cityHash64(event_id) % 2000 = 0"
        )
    ]
    candidates.sort()
    cases = rng.sample(candidates, min(args.cases, len(candidates)))
    last = int(datetime.now(tz=UTC).timestamp() * 1000)
    periods = []
    for _ in cases:
        to = last - rng.randrange(0, 14) * DAY_MS
        periods.append((to - 14 * DAY_MS, to))
    results: dict[str, dict[str, float]] = {}
    depths = [int(d) for d in args.depths.split(",")]
    for depth in depths:
        for rule_name in args.rules.split(","):
            # Under overlap, with and without the cap at the next scan elsewhere, each
            # case under both, in alternating order: the two latencies compare within one
            # sitting on a shared machine.
            variants = [Rule(rule_name, depth=depth)]  # type: ignore[arg-type]
            if rule_name == "overlap" and not args.no_cap_compare:
                variants = [Rule("overlap", depth=depth, cap_at_next_scan=c) for c in (True, False)]
            n = args.depth2_cases if depth == 2 and args.depth2_cases else len(cases)
            chosen = list(zip(cases, periods, strict=True))
            for case, (frm, to) in chosen[:3]:  # warm-up
                if depth == 1:
                    for rule in variants:
                        trace_person(runner, case, frm, to, rule, tables)
            runs: dict[Rule, dict[str, list[float]]] = {
                rule: {"times": [], "counts": [], "persons": [], "load": []} for rule in variants
            }
            for k, (case, (frm, to)) in enumerate(chosen[:n]):
                for rule in variants[::-1] if k % 2 else variants:
                    got = runs[rule]
                    got["load"].append(os.getloadavg()[0])
                    started = time.perf_counter()
                    result = trace_person(runner, case, frm, to, rule, tables)
                    got["times"].append((time.perf_counter() - started) * 1000)
                    got["counts"].append(len(result.contacts))
                    got["persons"].append(
                        len({c.person_id for c in result.contacts if c.degree == 1})
                    )
            for rule, got in runs.items():
                key = f"{rule_name} depth {depth}"
                if len(variants) > 1:
                    key += " cap" if rule.capped else " no cap"
                times, counts = got["times"], got["counts"]
                results[key] = {
                    "p50_ms": round(quantile(times, 0.5), 1),
                    "p99_ms": round(quantile(times, 0.99), 1),
                    "max_ms": round(max(times), 1),
                    "cases": len(times),
                    "contacts_median": statistics.median(counts),
                    "contacts_p90": round(quantile(counts, 0.9), 1),
                    "contacts_max": max(counts),
                    "f1_persons_median": statistics.median(got["persons"]),
                    "f1_persons_p90": round(quantile(got["persons"], 0.9), 1),
                    "load_median": round(statistics.median(got["load"]), 2),
                    "load_max": round(max(got["load"]), 2),
                }
                r = results[key]
                print(
                    f"{stored:>12,} rows  {key:<29} p50 {r['p50_ms']:>9.1f} ms"
                    f"  p99 {r['p99_ms']:>9.1f} ms  max {r['max_ms']:>9.1f} ms  cases {len(times)}"
                    f"  contacts median {r['contacts_median']:.0f} p90 {r['contacts_p90']:.0f}"
                    f" max {r['contacts_max']}  F1 persons median {r['f1_persons_median']:.0f}"
                    f" p90 {r['f1_persons_p90']:.0f}"
                    f"  load {r['load_median']:.1f} (max {r['load_max']:.1f})",
                    flush=True,
                )
            if len(variants) == 2:
                cap, base = (runs[v]["times"] for v in variants)
                ratios = [a / b for a, b in zip(cap, base, strict=True)]
                key = f"{rule_name} depth {depth} cap / no cap"
                results[key] = {
                    "p50_ratio": round(quantile(cap, 0.5) / quantile(base, 0.5), 3),
                    "p99_ratio": round(quantile(cap, 0.99) / quantile(base, 0.99), 3),
                    "per_case_ratio_median": round(statistics.median(ratios), 3),
                }
                print(
                    f"{stored:>12,} rows  {key:<29} p50 {results[key]['p50_ratio']:.3f}x"
                    f"  p99 {results[key]['p99_ratio']:.3f}x"
                    f"  per case (median) {results[key]['per_case_ratio_median']:.3f}x",
                    flush=True,
                )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(
                {
                    "rows": stored,
                    "shape": shape.name,
                    "persons": shape.persons,
                    "premises": shape.premises,
                    "results": results,
                },
                f,
                indent=2,
            )
    if args.drop:
        client.execute(f"DROP DATABASE `{db}`")
    client.disconnect()


if __name__ == "__main__":
    main()
