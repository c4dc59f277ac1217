"""What every component's metrics share: the build info series, a histogram fed whole
batches of event times (`BulkHistogram`), and for the components
without a web app of their own (worker, sink) a loop heartbeat and the HTTP server of
`/metrics` and `/healthz`.

Liveness means "the component's loop ran recently", not "data arrived": a quiet night
is healthy, and so is a sink that keeps looping while ClickHouse is down (a restart
would not bring ClickHouse back). A loop that stopped turning (a deadlock, a call that
never returns) is what a restart fixes, so that is what `/healthz` reports. A loop that
turns but makes no progress on a backlog is an alert, not a restart
(`deploy/prometheus/alerts.yml`, `*NoProgress`).
"""

from __future__ import annotations

import json
import platform
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Info, make_wsgi_app
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

__all__ = [
    "HEALTH_PATH",
    "BulkHistogram",
    "Heartbeat",
    "MetricsServer",
    "build_info",
    "package_version",
]

HEALTH_PATH: Final = "/healthz"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def package_version() -> str:
    """The installed scantrace distribution's version ("unknown" when run from a tree
    that was never installed)."""
    try:
        return version("scantrace")
    except PackageNotFoundError:
        return "unknown"


def build_info(registry: CollectorRegistry, prefix: str) -> Info:
    """`{prefix}build_info{version, python_version} 1`: which release runs where, to
    tell a rollout's old and new pods apart on a dashboard."""
    info = Info(f"{prefix}build", "Version of scantrace and of Python", registry=registry)
    info.info({"version": package_version(), "python_version": platform.python_version()})
    return info


class BulkHistogram(Collector):
    """A histogram of `now - t` seconds fed a batch of event times `t` (epoch ms) at once.

    Latencies observed once per scan come tens of thousands a second; one sort and one
    bisection per bucket per batch cost far less than one `Histogram.observe` per scan.
    With `label`, one series per label value (created on first use); without, one
    unlabelled series, exported from the start.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets_s: Sequence[float],
        registry: CollectorRegistry,
        *,
        label: str | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds_s = tuple(float(b) for b in buckets_s)
        self._bounds_ms = tuple(int(b * 1000) for b in buckets_s)
        self._lock = threading.Lock()
        # Per label value: cumulative counts, one per bound, then +Inf; and the sum.
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        if label is None:
            self._counts[""] = [0] * (len(self._bounds_ms) + 1)
            self._sums[""] = 0.0
        registry.register(self)

    def _family(self) -> HistogramMetricFamily:
        labels = [] if self.label is None else [self.label]
        return HistogramMetricFamily(self.name, self.documentation, labels=labels)

    def describe(self) -> list[Metric]:
        return [self._family()]

    def observe_since(self, times_ms: Sequence[int], now_ms: int, label_value: str = "") -> None:
        """One observation of `now_ms - t` seconds for every t in `times_ms`."""
        n = len(times_ms)
        if not n:
            return
        ordered = sorted(times_ms)  # often nearly sorted already: a linear pass for timsort
        # latency <= bound  <=>  t >= now - bound
        below = [n - bisect_left(ordered, now_ms - b) for b in self._bounds_ms]
        total_s = (n * now_ms - sum(ordered)) / 1000
        with self._lock:
            counts = self._counts.get(label_value)
            if counts is None:
                counts = self._counts[label_value] = [0] * (len(self._bounds_ms) + 1)
            for i, c in enumerate(below):
                counts[i] += c
            counts[-1] += n
            self._sums[label_value] = self._sums.get(label_value, 0.0) + total_s

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        bounds = [*(repr(b) for b in self.bounds_s), "+Inf"]
        with self._lock:
            for value, counts in self._counts.items():
                labels = [] if self.label is None else [value]
                buckets = list(zip(bounds, counts, strict=True))
                family.add_metric(labels, buckets, self._sums[value])
        yield family

    def count(self, label_value: str = "") -> int:
        """Observations so far (of one label value)."""
        with self._lock:
            counts = self._counts.get(label_value)
            return counts[-1] if counts is not None else 0


class Heartbeat:
    """When a loop last turned. `beat` is one float store (safe from any thread);
    `age` is read by the health endpoint's thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self.clock()

    def age(self) -> float:
        return max(0.0, self.clock() - self._last)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: not worth a log line each."""


class MetricsServer:
    """`/healthz` from a heartbeat, everything else prometheus_client's exposition of
    `registry`, in a daemon thread. `/healthz` answers 200 while the heartbeat is younger
    than `stall_seconds`, else 503; its JSON body says how old it is."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        heartbeat: Heartbeat,
        stall_seconds: float,
    ) -> None:
        self.heartbeat = heartbeat
        self.stall_seconds = stall_seconds
        self._metrics = make_wsgi_app(registry)
        server_class: type[WSGIServer] = ThreadingWSGIServer
        self.httpd = make_server(host, port, self._app, server_class, handler_class=_QuietHandler)
        self.port = int(self.httpd.server_port)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        age = self.heartbeat.age()
        alive = age < self.stall_seconds
        body = json.dumps(
            {
                "status": "ok" if alive else "stalled",
                "loop_age_seconds": round(age, 3),
                "stall_seconds": self.stall_seconds,
            }
        ).encode()
        status = "200 OK" if alive else "503 Service Unavailable"
        start_response(
            status,
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
