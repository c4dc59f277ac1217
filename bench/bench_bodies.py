"""The gateway's body decoding against hostile bodies, in process (no services): time and
peak Python allocations (tracemalloc) of what a crafted body costs, with the decoders the
gateway used before beside them for comparison, and what the bounds cost a normal batch.

    python -m bench bodies [--members 10000,40000,838860] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import statistics
import time
import tracemalloc
import zlib
from collections.abc import Callable

import msgpack

from ingest.gateway.body import Gunzip, MsgpackItems, check_json_size
from ingest.http import HttpError

MILLION_EMPTY_MAPS = b"\xdd\x00\x0f\x42\x40" + b"\x80" * 1_000_000


def previous_gunzip(data: bytes, limit: int) -> bytes:
    """The gateway's earlier loop: a new decoder per member fed the whole remainder, whose
    `unused_data` (a copy of the rest) starts the next member."""
    out = bytearray()
    while data:
        decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += decoder.decompress(data, limit + 1 - len(out))
        data = decoder.unused_data
    return bytes(out)


def timed(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with contextlib.suppress(HttpError, ValueError):
            call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        call()
    except (HttpError, ValueError):
        pass
    finally:
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", default="10000,20000,40000,838860")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = args.runs
    print(f"# python -m bench bodies --members {args.members} --runs {runs}")
    print(f"# {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")

    member = gzip.compress(b"")
    print("\ngzip, N empty members (20 bytes each), no member cap; median seconds")
    for n in (int(x) for x in args.members.split(",")):
        body = member * n
        decoder = Gunzip(1 << 24, n)
        now = timed(lambda body=body, n=n: Gunzip(1 << 24, n)(body), runs)
        decoder(body)
        line = f"  {n:>9,} members ({len(body) / 2**20:5.1f} MiB): {now:7.3f} s"
        line += f", {decoder.fed / len(body):.1f} bytes fed to zlib per byte"
        if n <= 40_000:
            before = timed(lambda body=body: previous_gunzip(body, 1 << 24), runs)
            line += f"; previous loop {before:7.3f} s"
        print(line)
    body = member * (16 * 2**20 // len(member))
    capped = timed(lambda: Gunzip(1 << 24, 16)(body), runs)
    print(f"  16 MiB of members with the default cap (16): {capped * 1000:.2f} ms")

    print("\n1,000,000 empty maps; median seconds, peak allocations")
    refuse = lambda: MsgpackItems(MILLION_EMPTY_MAPS, 10_000)  # noqa: E731
    full = lambda: msgpack.unpackb(MILLION_EMPTY_MAPS, raw=False, timestamp=0)  # noqa: E731
    for name, call in (("msgpack, header check", refuse), ("msgpack, whole decode", full)):
        print(f"  {name:<26} {timed(call, runs) * 1000:8.2f} ms {peak(call) / 2**20:7.1f} MiB")
    text = b'{"scans": [' + b",".join([b"{}"] * 1_000_000) + b"]}"
    bound = lambda: check_json_size(text, 10_000)  # noqa: E731
    loads = lambda: json.loads(text)  # noqa: E731
    for name, call in (("JSON, value bound", bound), ("JSON, json.loads", loads)):
        print(f"  {name:<26} {timed(call, runs) * 1000:8.2f} ms {peak(call) / 2**20:7.1f} MiB")

    print("\nthe bounds on a valid batch; median microseconds")
    now_ms = 1_700_000_000_000
    for n in (1000, 10_000):
        scans = [
            {
                "event_id": f"evt-{i}",
                "person_id": f"p-{i}",
                "premises_id": "NT-1",
                "scanned_at": now_ms,
            }
            for i in range(n)
        ]
        packed, text = msgpack.packb(scans), json.dumps({"scans": scans}).encode()
        header = timed(lambda packed=packed: MsgpackItems(packed, 10_000), 200)
        values = timed(lambda text=text: check_json_size(text, 10_000), 200)
        print(
            f"  {n:>6} scans: msgpack header {header * 1e6:6.1f} us; "
            f"JSON value bound ({len(text) / 1e6:.2f} MB) {values * 1e6:6.1f} us"
        )


if __name__ == "__main__":
    main()
