"""Whole answers of recent questions, kept for paging them as JSON: the pages of one
question are cut from one answer instead of asking ClickHouse again for every page (a
depth-2 query takes seconds to minutes, and an SQL `LIMIT/OFFSET` would still group every
row for every page)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class AnswerCache(Generic[V]):
    """At most `max_rows` rows in all, each answer for at most `ttl_s` seconds; the least
    recently used answers go first. An answer costs its rows plus one (so that empty
    answers are bounded too); one larger than `max_rows` is not kept. Used from the event
    loop only (no lock)."""

    def __init__(
        self, max_rows: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_rows = max_rows
        self.ttl_s = ttl_s
        self.clock = clock
        self.rows = 0
        self._entries: OrderedDict[Hashable, tuple[float, int, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, _, value = entry
        if self.clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V, rows: int) -> None:
        if key in self._entries:
            self._drop(key)
        cost = rows + 1
        if cost > self.max_rows or self.ttl_s <= 0:
            return
        now = self.clock()
        for k in [k for k, (expires, _, _) in self._entries.items() if now >= expires]:
            self._drop(k)
        while self.rows + cost > self.max_rows:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (now + self.ttl_s, cost, value)
        self.rows += cost

    def _drop(self, key: Hashable) -> None:
        _, cost, _ = self._entries.pop(key)
        self.rows -= cost
