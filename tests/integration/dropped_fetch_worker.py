"""`scantrace worker` that drops the first fetch holding records of TOPIC unprocessed.

The fault it injects: a rebalance that begins between a fetch and its processing stops
the flow, and the fetch loop drops the fetched records; the fetch position has moved past
them, and the worker relies on seeking back to the committed offsets to read them again
(`processors.faust_transport.BulkConsumer.seek_to_committed`). Here the first fetch with
records of TOPIC finds the flow stopped; it resumes a second later, without a rebalance.

    python dropped_fetch_worker.py TOPIC   (environment as for `scantrace worker`)
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from processors.faust_transport import BulkConsumer
from scantrace.cli import main

TOPIC = sys.argv[1]
_dropped: list[bool] = []

_wait_next_records = BulkConsumer._wait_next_records


async def wait_next_records(self: BulkConsumer, timeout: float) -> Any:
    records, active = await _wait_next_records(self, timeout)
    if not _dropped and records and any(tp.topic == TOPIC and recs for tp, recs in records.items()):
        _dropped.append(True)
        self.stop_flow()
        asyncio.get_running_loop().call_later(1.0, self.resume_flow)
    return records, active


BulkConsumer._wait_next_records = wait_next_records  # type: ignore[method-assign]

if __name__ == "__main__":
    main(["worker"])
