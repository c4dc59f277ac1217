"""Throughput of the pure processors core (not a test): `python -m bench core`.

Generates ~200k msgpack scans over ~2,000 premises (about 5% duplicates, some double
taps, a sprinkle of unknown premises and garbage), then times `ProcessorCore.process` in
batches of 1,000 on fresh state, 5 runs, and prints the median scans/s. A second figure
includes encoding the enriched rows as `scans.enriched` frames, which the Faust app also pays.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import msgpack

from bench.common import make_premises
from ingest.premises import Premises
from processors.core import ProcessorCore
from processors.records import RawRecord, encode_frames

NOW = 1_700_000_000_000
DAY = 86_400_000


def make_records(n: int, n_premises: int, rng: random.Random) -> list[RawRecord]:
    persons = [f"person-{i:07d}" for i in range(n // 4)]
    values: list[bytes] = []
    recent: list[bytes] = []
    while len(values) < n:
        roll = rng.random()
        if roll < 0.05 and recent:  # an at-least-once redelivery
            values.append(rng.choice(recent))
            continue
        person = rng.choice(persons)
        premises = f"NT-{rng.randrange(n_premises + 20):06d}"  # ~1% unknown premises
        scanned_at = NOW - rng.randrange(DAY)
        wire = {
            "event_id": f"{rng.getrandbits(96):024x}",
            "person_id": person,
            "premises_id": premises,
            "scanned_at": scanned_at,
            "kind": "checkin" if rng.random() < 0.7 else "checkout",
            "gateway_id": "gw-app",
            "received_at": NOW - rng.randrange(60_000),
            "schema": 1,
        }
        values.append(msgpack.packb(wire))
        if roll < 0.08:  # a double tap a few seconds later, a new event_id
            tap = dict(wire, event_id=f"{rng.getrandbits(96):024x}", scanned_at=scanned_at + 4000)
            values.append(msgpack.packb(tap))
        elif roll < 0.081:
            values.append(b"\xc1garbage")
        recent.append(values[-1])
        if len(recent) > 5000:
            recent = recent[-2500:]
    del values[n:]
    return [RawRecord(value, "scans.raw", 0, offset) for offset, value in enumerate(values)]


def run_once(
    premises: list[Premises], records: list[RawRecord], batch: int, encode: bool
) -> tuple[float, float]:
    """One pass over the records on fresh state: (scans/s by wall clock, by CPU time)."""
    core = ProcessorCore()
    for p in premises:
        core.upsert_premises(p, NOW)
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    wall, cpu = time.perf_counter(), time.process_time()
    for chunk in batches:
        result = core.process(chunk, NOW)
        if encode:
            encode_frames(result.rows, 1_000_000)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert core.counts.balanced(), core.counts
    return len(records) / wall, len(records) / cpu


def unpack_only(records: list[RawRecord]) -> tuple[float, float]:
    """The floor: msgpack-decoding every record and nothing else (same clocks)."""
    unpackb = msgpack.unpackb
    wall, cpu = time.perf_counter(), time.process_time()
    for record in records:
        try:
            unpackb(record.value, raw=False, strict_map_key=True, timestamp=0)
        except Exception:
            continue
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(records) / wall, len(records) / cpu


def report(label: str, runs: list[tuple[float, float]]) -> float:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    each = ", ".join(f"{r[0]:,.0f}" for r in runs)
    print(f"{label:>22}: median {wall:,.0f} scans/s wall, {cpu:,.0f} per CPU second  ({each})")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--premises", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(20211115)
    premises = make_premises(args.premises, rng)
    records = make_records(args.events, args.premises, rng)

    core = ProcessorCore()
    for p in premises:
        core.upsert_premises(p, NOW)
    for i in range(0, len(records), args.batch):
        core.process(records[i : i + args.batch], NOW)
    print(f"{len(records):,} records, {args.premises:,} premises, batches of {args.batch:,}:")
    print(f"  {core.counts.as_dict()}")

    floor = report("msgpack unpack only", [unpack_only(records) for _ in range(args.runs)])
    rate = report(
        "core.process", [run_once(premises, records, args.batch, False) for _ in range(args.runs)]
    )
    report(
        "process + encode out",
        [run_once(premises, records, args.batch, True) for _ in range(args.runs)],
    )
    print(f"core.process: {rate:,.0f} scans/s ({rate / floor:.2f} x the unpack-only rate)")


if __name__ == "__main__":
    main()
