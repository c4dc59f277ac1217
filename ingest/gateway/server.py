"""Run the gateway: HTTP listener + Kafka publisher, stopped gracefully by SIGTERM/SIGINT.

On a stop signal the listener closes first (no new requests), requests in progress finish
(their scans are acknowledged by Kafka before they are answered), then the publisher
delivers whatever it still holds and disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from ingest.gateway.app import build_app, build_metrics_app, runner_kwargs
from ingest.gateway.base import Publisher
from ingest.gateway.kafka_publish import KafkaBatchPublisher
from ingest.gateway.metrics import GatewayMetrics
from ingest.gateway.settings import GatewaySettings
from ingest.http import listening, stop_on_signals

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
    with stop_on_signals(stop):
        await publisher.start()
        try:
            async with contextlib.AsyncExitStack() as listeners:
                if options.metrics_port:
                    metrics_app = build_metrics_app(metrics)
                    host, metrics_port = options.metrics_host, options.metrics_port
                    await listeners.enter_async_context(
                        listening(
                            metrics_app, host, metrics_port, access_log=None, keepalive_timeout=15.0
                        )
                    )
                    log.info("metrics on http://%s:%d/metrics", host, metrics_port)
                port = await listeners.enter_async_context(
                    listening(
                        app,
                        options.host,
                        options.port,
                        backlog=1024,
                        shutdown_timeout=options.shutdown_timeout_s,
                        **runner_kwargs(options),
                    )
                )
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
            # Listeners closed (the gateway's first), requests in progress answered.
        finally:
            await publisher.close()  # delivers what it still holds
            log.info("gateway stopped")
