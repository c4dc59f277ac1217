"""`scantrace run`: gateway, worker and sink in one command for small deployments."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from scantrace.commands import check_reachable
from scantrace.pipeline import Pipeline
from scantrace.settings import ServicesSettings


@click.command()
@click.option("--gateway-port", default=8080, show_default=True, help="HTTP port of the gateway")
@click.option("--worker-metrics-port", default=9101, show_default=True)
@click.option("--sink-metrics-port", default=9102, show_default=True)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Interface of the worker's and sink's /metrics (0.0.0.0: scraped from other hosts)",
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
    help="Where each component logs [default: STATE_DIR/logs/run]",
)
def run(
    gateway_port: int,
    worker_metrics_port: int,
    sink_metrics_port: int,
    metrics_host: str,
    tokens_file: str | None,
    log_dir: str | None,
) -> None:
    """Start gateway, worker and sink against the configured services until Ctrl-C."""
    check_reachable()  # a service down: one line and exit 3, before any child starts
    logs = Path(log_dir) if log_dir else ServicesSettings().state_dir / "logs" / "run"
    pipeline = Pipeline(
        gateway_port=gateway_port,
        worker_metrics_port=worker_metrics_port,
        sink_metrics_port=sink_metrics_port,
        log_dir=logs,
        metrics_host=metrics_host,
        extra_gateway_args=("--tokens-file", tokens_file) if tokens_file else (),
    )
    pipeline.start()
    click.echo(f"gateway  http://127.0.0.1:{gateway_port}/v1/scans  (metrics /metrics)")
    click.echo(f"worker   metrics http://127.0.0.1:{worker_metrics_port}/metrics")
    click.echo(f"sink     metrics http://127.0.0.1:{sink_metrics_port}/metrics")
    click.echo(f"logs     {logs}")
    sys.exit(pipeline.wait())
