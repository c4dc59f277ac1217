"""`scantrace gateway`: the HTTP ingest gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ingest.gateway.server import serve
from ingest.gateway.settings import GatewaySettings
from ingest.kafka_probe import check_kafka
from scantrace.commands import LOG_LEVEL, InputFile, server_overrides
from scantrace.logs import setup_logging


@click.command()
@click.option(
    "--host",
    default=None,
    help="Interface to listen on [default 127.0.0.1]",
    envvar="SCANTRACE_GATEWAY__HOST",
    show_envvar=True,
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port [default 8080]",
    envvar="SCANTRACE_GATEWAY__PORT",
    show_envvar=True,
)
@click.option(
    "--tokens-file",
    type=InputFile(),
    default=None,
    help='JSON {"TOKEN": "GATEWAY_ID", ...} (or the JSON itself in SCANTRACE_GATEWAY__TOKENS)',
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics on this port only, not on --port [default 0: on --port]",
    envvar="SCANTRACE_GATEWAY__METRICS_PORT",
    show_envvar=True,
)
@click.option(
    "--metrics-host",
    default=None,
    help="Interface for --metrics-port [default 127.0.0.1]",
    envvar="SCANTRACE_GATEWAY__METRICS_HOST",
    show_envvar=True,
)
@LOG_LEVEL
def gateway(
    host: str | None,
    port: int | None,
    tokens_file: Path | None,
    metrics_port: int | None,
    metrics_host: str | None,
    log_level: str,
) -> None:
    """HTTP ingest gateway: POST /v1/scans (JSON or msgpack, gzip ok) to Kafka scans.raw.

    Also GET /healthz, /readyz and /metrics (or /metrics on --metrics-port only).
    Limits (body size, scans per request, requests and bytes in flight, timeouts) from
    SCANTRACE_GATEWAY__*. Stops gracefully on SIGTERM.
    Kafka from SCANTRACE_KAFKA__BOOTSTRAP (or the running local services).
    """
    setup_logging(log_level, "gateway")
    settings = GatewaySettings()
    changes = server_overrides(host, port, tokens_file)
    if metrics_port is not None:
        changes["metrics_port"] = metrics_port
    if metrics_host is not None:
        changes["metrics_host"] = metrics_host
    settings = settings.with_options(**changes)
    settings.gateway.token_map()
    check_kafka(settings.kafka, [settings.kafka.raw, settings.kafka.dlq])
    asyncio.run(serve(settings))
