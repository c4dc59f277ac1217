"""`scantrace run`: gateways, workers and sinks under one supervisor: one of each for a
small deployment, several of each on a cluster (`--workers N --sinks M --gateways K`)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import click

from scantrace.commands import check_reachable
from scantrace.pipeline import STATUS_FILE, Pipeline, RunMetrics
from scantrace.settings import ServicesSettings

# How often the supervisor reads the brokers' metadata for under-replicated partitions.
WATCH_SECONDS = 15.0


def _watch_replication(metrics: RunMetrics, stop: threading.Event) -> None:
    """Export the under-replicated partitions of the pipeline's topics, as the brokers
    report them, until `stop`."""
    from scantrace.services.manager import local_kafka
    from scantrace.topics import under_replicated
    from sinks.settings import SinkSettings

    log = logging.getLogger("scantrace.run")
    kafka = local_kafka("topics", SinkSettings().kafka)
    while not stop.is_set():
        try:
            for topic, n in under_replicated(kafka).items():
                metrics.under_replicated.labels(topic).set(n)
        except Exception as exc:  # a broker away now is no reason to stop watching
            log.warning("could not read the topics' replication: %s", exc)
        stop.wait(WATCH_SECONDS)


@click.command()
@click.option(
    "--gateway-port",
    default=8080,
    show_default=True,
    help="HTTP port of the gateway (of the first; the others on the next ports)",
)
@click.option("--worker-metrics-port", default=9101, show_default=True, help="(the first's)")
@click.option("--sink-metrics-port", default=9102, show_default=True, help="(the first's)")
@click.option(
    "--metrics-port",
    default=9103,
    show_default=True,
    help="The supervisor's own /metrics (restarts, under-replicated partitions); 0: none",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Interface of the worker's and sink's /metrics (0.0.0.0: scraped from other hosts)",
)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--sinks", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--gateways", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option(
    "--restart-delay",
    type=click.FloatRange(0.1, 600),
    default=1.0,
    show_default=True,
    help="Seconds before a component that exited starts again; doubles at each exit",
)
@click.option(
    "--tokens-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Gateway tokens JSON file (or the JSON itself in SCANTRACE_GATEWAY__TOKENS)",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where each component logs, and run.json [default: STATE_DIR/logs/run]",
)
def run(
    gateway_port: int,
    worker_metrics_port: int,
    sink_metrics_port: int,
    metrics_port: int,
    metrics_host: str,
    workers: int,
    sinks: int,
    gateways: int,
    restart_delay: float,
    tokens_file: str | None,
    log_dir: str | None,
) -> None:
    """Start gateways, workers and sinks against the configured services, and start again
    any that exits, until Ctrl-C. Workers share one consumer group and sinks another:
    Kafka spreads the partitions over them."""
    check_reachable()  # a service down: one line and exit 3, before any child starts
    from prometheus_client import CollectorRegistry, start_http_server

    logs = Path(log_dir) if log_dir else ServicesSettings().state_dir / "logs" / "run"
    registry = CollectorRegistry()
    metrics = RunMetrics(registry)
    pipeline = Pipeline(
        gateway_port=gateway_port,
        worker_metrics_port=worker_metrics_port,
        sink_metrics_port=sink_metrics_port,
        log_dir=logs,
        metrics_host=metrics_host,
        extra_gateway_args=("--tokens-file", tokens_file) if tokens_file else (),
        workers=workers,
        sinks=sinks,
        gateways=gateways,
        restart_delay=restart_delay,
        metrics=metrics,
        reserved_ports=(metrics_port,) if metrics_port else (),
    )
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
    stop = threading.Event()
    threading.Thread(target=_watch_replication, args=(metrics, stop), daemon=True).start()
    pipeline.start()
    for kind in ("gateway", "worker", "sink"):
        for name, port in zip(
            pipeline.names(kind, len(pipeline.ports(kind))), pipeline.ports(kind), strict=True
        ):
            where = (
                f"http://127.0.0.1:{port}/v1/scans  (metrics /metrics)"
                if kind == "gateway"
                else f"metrics http://127.0.0.1:{port}/metrics"
            )
            click.echo(f"{name:<10} {where}")
    if metrics_port:
        click.echo(f"{'run':<10} metrics http://127.0.0.1:{metrics_port}/metrics")
    click.echo(f"logs       {logs}  (status: {logs / STATUS_FILE})", nl=True)
    sys.stdout.flush()
    code = pipeline.wait()
    stop.set()
    sys.exit(code)
