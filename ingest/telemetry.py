"""What every component's metrics share: the build info series, and for the components
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
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Info, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["HEALTH_PATH", "Heartbeat", "MetricsServer", "build_info", "package_version"]

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
