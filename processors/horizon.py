"""Dedup and repeat memory as arrays: 128-bit key hashes to int64 values, a batch at a time.

`seen` and `last_kept` hold an entry for every scan of the dedup horizon (millions in a
province's day). As Python dicts of strings they cost about 300 bytes and 2 us of the core
a scan (bench/RESULTS.md); here an entry is one row of an int64 array, the key's 128-bit
hash then its values, and a batch is looked up or written by one compiled loop (numba).

The key is the 128-bit MurmurHash3 (x64) of the key's UTF-8 (`hash_keys`): two different
ids share a hash with probability about n / 2**127 for n entries held, far below any other
way a scan can go wrong here. Its lowest bit is forced to 1, so an all-zero row is empty.

Open addressing with linear probing. Column 0 of the values is the entry's arrival time
(ms), the clock of the horizon: `expire(cutoff)` marks what arrived before `cutoff` as
gone; a write takes over the first gone slot on its key's probe path, and a rebuild (when
`MAX_LOAD` of the slots have been used, or when few are live) leaves gone entries out.
`lookup` never returns a gone entry, as if it had been deleted. A table between
`TARGET_LOAD` and `MAX_LOAD` full costs 24 / 0.5 to 24 / 0.75 bytes an entry of one value
(48 to 32), 64 to 43 of two.

Transactions for the worker: `commit()` returns what was written since the last commit
(the batch's changelog) and `rollback()` undoes it, as `processors.tables.PartitionView`
does for the dict tables; `load()` writes without recording (a changelog replay).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast

import mmh3
import numba
import numpy as np
import numpy.typing as npt

Keys = npt.NDArray[np.int64]  # shape (n, 2): the hash's two 64-bit halves
Values = npt.NDArray[np.int64]  # shape (n, width); column 0 is the arrival time
Mask = npt.NDArray[np.bool_]

MAX_LOAD: Final = 0.75  # rebuild when this share of the slots has been used (live or gone)
TARGET_LOAD: Final = 0.5  # a rebuild sizes the table for this share of live entries
MIN_CAPACITY: Final = 1024
_POSITIVE: Final = (1 << 63) - 1
# `expire` counts the live entries (a pass over the table) to decide on shrinking: on
# every call for a table this small, on one call in this many for a larger one.
SMALL: Final = 1 << 16
SHRINK_CHECK_EVERY: Final = 64
# The arrival of a rolled-back insert: before any cutoff, so it is gone at once.
DELETED: Final = -(1 << 62)

F = TypeVar("F", bound=Callable[..., Any])


def _compiled(fn: F) -> F:
    """Compiled by numba on first call, cached on disk beside the module or in
    `NUMBA_CACHE_DIR`; with no writable place for it (a read-only image), compiled again
    at each start (seconds)."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True)(fn))
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return cast(F, numba.njit(nogil=True)(fn))


@_compiled
def _lookup(table: Any, keys: Any, cutoff: int, missing: int, out: Any) -> None:
    capacity = table.shape[0]
    width = out.shape[1]
    for i in range(keys.shape[0]):
        k0 = keys[i, 0]
        k1 = keys[i, 1]
        s = (k0 & _POSITIVE) % capacity
        held = False
        while True:
            t1 = table[s, 1]
            if t1 == 0:
                break
            if t1 == k1 and table[s, 0] == k0:
                held = table[s, 2] >= cutoff
                break
            s = s + 1 if s + 1 < capacity else 0
        for c in range(width):
            out[i, c] = table[s, 2 + c] if held else missing


@_compiled
def _upsert(table: Any, keys: Any, values: Any, cutoff: int, held: Any, was: Any) -> int:
    """Write each row; `held` / `was`: whether the key was there and its values before.
    Returns how many empty slots were filled."""
    capacity = table.shape[0]
    width = values.shape[1]
    filled = 0
    for i in range(keys.shape[0]):
        k0 = keys[i, 0]
        k1 = keys[i, 1]
        s = (k0 & _POSITIVE) % capacity
        free = -1
        while True:
            t1 = table[s, 1]
            if t1 == 0 or (t1 == k1 and table[s, 0] == k0):
                break
            if free < 0 and table[s, 2] < cutoff:
                free = s
            s = s + 1 if s + 1 < capacity else 0
        if table[s, 1] != 0:  # the key is there
            held[i] = table[s, 2] != DELETED
            for c in range(width):
                was[i, c] = table[s, 2 + c]
        else:
            held[i] = False
            if free >= 0:
                s = free
            else:
                filled += 1
            table[s, 0] = k0
            table[s, 1] = k1
        for c in range(width):
            table[s, 2 + c] = values[i, c]
    return filled


@_compiled
def _reinsert(new: Any, old: Any, cutoff: int) -> int:
    """The live rows of `old` into the empty table `new`; returns how many."""
    capacity = new.shape[0]
    n = 0
    for r in range(old.shape[0]):
        if old[r, 1] == 0 or old[r, 2] < cutoff:
            continue
        s = (old[r, 0] & _POSITIVE) % capacity
        while new[s, 1] != 0:
            s = s + 1 if s + 1 < capacity else 0
        new[s, :] = old[r, :]
        n += 1
    return n


def hash_keys(keys: Iterable[str]) -> Keys:
    """The (n, 2) key hashes of `keys` (see the module docstring)."""
    raw = bytearray(b"".join(map(mmh3.hash_bytes, keys)))
    out = np.frombuffer(raw, dtype=np.int64).reshape(-1, 2)
    out[:, 1] |= 1
    return out


class HorizonMap:
    """Key hash -> `width` int64 values; see the module docstring."""

    __slots__ = ("_changes", "_expires", "_journal", "cutoff", "table", "used", "width")

    def __init__(self, width: int, capacity: int = MIN_CAPACITY) -> None:
        if capacity < MIN_CAPACITY:
            raise ValueError(f"capacity must be at least {MIN_CAPACITY}")
        self.width = width
        self.table = np.zeros((capacity, 2 + width), dtype=np.int64)
        self.used = 0  # slots holding a key, live or gone (gone ones until reused or rebuilt)
        self.cutoff = DELETED + 1  # entries that arrived before this are gone
        self._expires = 0
        self._changes: list[tuple[Keys, Values]] = []
        # (keys, whether each was held before, its values before) per write, for rollback
        self._journal: list[tuple[Keys, Mask, Values]] = []

    @property
    def capacity(self) -> int:
        return len(self.table)

    def __len__(self) -> int:
        """Entries that arrived at or after the cutoff (a pass over the table)."""
        table = self.table
        return int(np.count_nonzero((table[:, 1] != 0) & (table[:, 2] >= self.cutoff)))

    def lookup(self, keys: Keys, missing: int) -> Values:
        """The values held for each key; `missing` in every column for a key not held or
        gone."""
        out = np.empty((len(keys), self.width), dtype=np.int64)
        _lookup(self.table, keys, self.cutoff, missing, out)
        return out

    def get(self, key: str) -> tuple[int, ...] | None:
        """One key's values (tests, debugging)."""
        [values] = self.lookup(hash_keys([key]), DELETED).tolist()
        return None if values[0] == DELETED else tuple(values)

    def upsert(self, keys: Keys, values: Values) -> None:
        """Write `values` for `keys` (distinct keys), recorded for `commit` / `rollback`."""
        if len(keys):
            held, was = self._write(keys, values)
            self._journal.append((keys, held, was))
            self._changes.append((keys, values))

    def load(self, keys: Keys, values: Values) -> None:
        """Write without recording (a changelog replay); of equal keys the last wins."""
        if len(keys):
            self._write(keys, values)

    def _write(self, keys: Keys, values: Values) -> tuple[Mask, Values]:
        if self.used + len(keys) > MAX_LOAD * self.capacity:
            self._rebuild(extra=len(keys))
        held = np.empty(len(keys), dtype=np.bool_)
        was = np.empty((len(keys), self.width), dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.int64)
        self.used += _upsert(self.table, keys, values, self.cutoff, held, was)
        return held, was

    def _rebuild(self, extra: int = 0) -> None:
        """Gone entries out, into a table sized for `TARGET_LOAD` (grow or shrink)."""
        capacity = max(MIN_CAPACITY, int((len(self) + extra) / TARGET_LOAD))
        table = np.zeros((capacity, 2 + self.width), dtype=np.int64)
        self.used = _reinsert(table, self.table, self.cutoff)
        self.table = table

    def expire(self, cutoff: int) -> None:
        """Entries that arrived before `cutoff` are gone (the cutoff never moves back);
        rebuild smaller when few slots are live."""
        self.cutoff = max(self.cutoff, cutoff)
        self._expires += 1
        check = self.capacity <= SMALL or self._expires % SHRINK_CHECK_EVERY == 0
        if self.capacity > MIN_CAPACITY and check and len(self) < self.capacity * TARGET_LOAD / 2:
            self._rebuild()

    def commit(self) -> tuple[Keys, Values]:
        """What was written since the last commit or rollback, in order; forget the undo."""
        changes = self._changes
        self._changes = []
        self._journal = []
        if not changes:
            return np.zeros((0, 2), np.int64), np.zeros((0, self.width), np.int64)
        if len(changes) == 1:
            return changes[0]
        return np.concatenate([k for k, _ in changes]), np.concatenate([v for _, v in changes])

    def rollback(self) -> None:
        """Undo the writes since the last commit or rollback, latest first."""
        for keys, held, was in reversed(self._journal):
            self._write(keys, np.where(held[:, None], was, DELETED))
        self._journal = []
        self._changes = []
