"""Progress of long work, on a terminal only: in a log file or a pipe (standard error not
a TTY) nothing is drawn, so logs hold only what the commands print themselves.

`bar` counts up to a known total (click's progress bar); `ticker` shows that work without
a known total is alive: a label, the seconds since it began and, from `status()`, what is
known so far (rows read by ClickHouse, say), redrawn twice a second on one line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import click

__all__ = ["Progress", "bar", "enabled", "ticker"]


class Progress(Protocol):
    def update(self, n: int) -> None: ...


class _Silent:
    def update(self, n: int) -> None:
        pass


def enabled() -> bool:
    """Whether progress is drawn: standard error is a terminal."""
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


@contextmanager
def bar(length: int, label: str) -> Iterator[Progress]:
    """A bar to `length` on a terminal; elsewhere an object whose `update` does nothing."""
    if not enabled() or length <= 0:
        yield _Silent()
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True) as b:
        yield b


@contextmanager
def ticker(label: str, status: Callable[[], str] | None = None) -> Iterator[None]:
    """`label` with the seconds elapsed (and `status()`) redrawn on a terminal while the
    block runs; nothing elsewhere. A failing `status` shows nothing more."""
    if not enabled():
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def draw() -> None:
        while not stop.wait(0.5):
            extra = ""
            if status is not None:
                try:
                    extra = status()
                except Exception:  # progress is a courtesy: never a failure of the work
                    extra = ""
            line = f"{label}: {time.monotonic() - started:.0f} s{', ' + extra if extra else ''}"
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()

    thread = threading.Thread(target=draw, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
