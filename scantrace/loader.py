"""Replay scans against the HTTP gateway at a target rate (`scantrace load`, the demo and
the benchmarks)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgpack


@dataclass
class LoadReport:
    sent: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    http_errors: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def load_http(
    scans: Sequence[dict[str, Any]],
    url: str,
    token: str,
    *,
    batch: int = 1000,
    rate: float = 0.0,
    concurrency: int = 4,
    retries: int = 20,
    answered: Callable[[int], None] | None = None,
) -> LoadReport:
    """POST `scans` in msgpack batches; `rate` scans/s (0 = as fast as it goes).
    A 503 is retried after its Retry-After: the gateway accepted nothing of that batch.
    `answered(n)` hears each batch of n scans the gateway answered (a progress bar)."""
    report = LoadReport()
    batches = [scans[i : i + batch] for i in range(0, len(scans), batch)]
    queue: asyncio.Queue[Sequence[dict[str, Any]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    start = time.monotonic()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/msgpack"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            if rate:
                # Pace by the scans already handed out: start time + sent/rate.
                due = start + report.sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            report.sent += len(chunk)
            body = msgpack.packb(list(chunk), use_bin_type=True)
            for _ in range(retries):
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status == 503:
                        report.http_errors[503] += 1
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status != 200:
                        report.http_errors[resp.status] += 1
                        break
                    answer = await resp.json()
                    report.accepted += int(answer["accepted"])
                    for r in answer["rejected"]:
                        report.rejected[r["reason"]] += 1
                    break
            if answered is not None:
                answered(len(chunk))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    report.seconds = time.monotonic() - start
    return report
