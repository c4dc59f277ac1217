"""`scantrace gateway`: the HTTP ingest gateway."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from ingest.auth import TokensError
from ingest.gateway.server import serve
from ingest.gateway.settings import GatewaySettings
from ingest.kafka_probe import KafkaStartupError, check_kafka
from scantrace.commands import one_line, server_overrides, setup_logging


@click.command()
@click.option(
    "--host",
    default=None,
    help="Interface to listen on [env: SCANTRACE_GATEWAY__HOST; default 127.0.0.1]",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="TCP port [env: SCANTRACE_GATEWAY__PORT; default 8080]",
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSON {"TOKEN": "GATEWAY_ID", ...} [env: SCANTRACE_GATEWAY__TOKENS holds the same JSON]',
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics on this port only, not on --port "
    "[env: SCANTRACE_GATEWAY__METRICS_PORT; default 0: on --port]",
)
@click.option(
    "--metrics-host",
    default=None,
    help="Interface for --metrics-port [env: SCANTRACE_GATEWAY__METRICS_HOST; default 127.0.0.1]",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    help="Logging level",
)
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
    setup_logging(log_level)
    try:
        settings = GatewaySettings()
        changes = server_overrides(host, port, tokens_file)
        if metrics_port is not None:
            changes["metrics_port"] = metrics_port
        if metrics_host is not None:
            changes["metrics_host"] = metrics_host
        settings = settings.with_options(**changes)
        settings.gateway.token_map()
        check_kafka(settings.kafka, [settings.kafka.raw, settings.kafka.dlq])
    except (ValidationError, TokensError, KafkaStartupError, RuntimeError, OSError) as exc:
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(2)
    asyncio.run(serve(settings))
