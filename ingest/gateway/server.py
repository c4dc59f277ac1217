"""Run the gateway: HTTP listener + Kafka publisher, stopped gracefully by SIGTERM/SIGINT.

On a stop signal the listener closes first (no new requests), requests in progress finish
(their scans are acknowledged by Kafka before they are answered), then the publisher
delivers whatever it still holds and disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from ingest.gateway.app import build_app, build_metrics_app, runner_kwargs
from ingest.gateway.base import Publisher
from ingest.gateway.kafka_publish import KafkaBatchPublisher
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


async def serve(
    settings: GatewaySettings,
    *,
    publisher: Publisher | None = None,
    registry: CollectorRegistry | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[int], None] | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT arrives). `on_listening` gets the
    bound port (useful with port 0)."""
    options = settings.gateway
    tokens = options.token_map()  # fails fast on a bad table, before anything starts
    if not tokens:
        log.warning("no gateway tokens configured: every POST /v1/scans will get 401")
    publisher = publisher or KafkaBatchPublisher(settings.kafka, options)
    metrics = GatewayMetrics(registry or CollectorRegistry())
    app = build_app(publisher, options, metrics, tokens=tokens)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    await publisher.start()
    runner = web.AppRunner(
        app, shutdown_timeout=options.shutdown_timeout_s, **runner_kwargs(options)
    )
    await runner.setup()
    metrics_runner: web.AppRunner | None = None
    try:
        site = web.TCPSite(runner, options.host, options.port, backlog=1024)
        await site.start()
        port = _bound_port(runner, options.port)
        if options.metrics_port:
            metrics_runner = web.AppRunner(
                build_metrics_app(metrics), access_log=None, keepalive_timeout=15.0
            )
            await metrics_runner.setup()
            await web.TCPSite(metrics_runner, options.metrics_host, options.metrics_port).start()
            log.info("metrics on http://%s:%d/metrics", options.metrics_host, options.metrics_port)
        log.info(
            "gateway listening on http://%s:%d (%d tokens, Kafka %s, topic %s)",
            options.host,
            port,
            len(tokens),
            settings.kafka.bootstrap or "?",
            settings.kafka.raw,
        )
        if on_listening is not None:
            on_listening(port)
        await stop.wait()
        log.info("stopping: no new requests; finishing those in progress")
    finally:
        await runner.cleanup()  # closes the listener, waits for requests in progress
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await publisher.close()  # delivers what it still holds
        for signum in handled:
            loop.remove_signal_handler(signum)
        log.info("gateway stopped")


def _bound_port(runner: web.AppRunner, default: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default
