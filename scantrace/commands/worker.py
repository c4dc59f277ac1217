"""`scantrace worker`: the Faust app of the processors stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from scantrace.commands import LOG_LEVELS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from processors.worker_settings import WorkerSettings


@click.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics on this port, 0 = off [default 0]",
    envvar="SCANTRACE_WORKER__METRICS_PORT",
    show_envvar=True,
)
@click.option(
    "--metrics-host",
    default=None,
    help="Interface for /metrics [default 0.0.0.0]",
    envvar="SCANTRACE_WORKER__METRICS_HOST",
    show_envvar=True,
)
@click.option(
    "--processing-guarantee",
    type=click.Choice(["at_least_once", "exactly_once"]),
    default=None,
    help="Delivery of each result [default at_least_once]",
    envvar="SCANTRACE_WORKER__PROCESSING_GUARANTEE",
    show_envvar=True,
)
@click.option(
    "--app-id",
    default=None,
    help="Faust app id and consumer group, after the topic prefix [default scantrace-worker]",
    envvar="SCANTRACE_WORKER__APP_ID",
    show_envvar=True,
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Faust's working folder [default worker-data in the local state directory, "
    "SCANTRACE_SERVICES__STATE_DIR]",
    envvar="SCANTRACE_WORKER__DATA_DIR",
    show_envvar=True,
)
@click.option(
    "--batch-max-records",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Records per fetched batch, at most [default 10000]",
    envvar="SCANTRACE_WORKER__BATCH_MAX_RECORDS",
    show_envvar=True,
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Logging level [default info]",
    envvar="SCANTRACE_WORKER__LOG_LEVEL",
    show_envvar=True,
)
def worker(
    metrics_port: int | None,
    metrics_host: str | None,
    processing_guarantee: str | None,
    app_id: str | None,
    data_dir: Path | None,
    batch_max_records: int | None,
    log_level: str | None,
) -> None:
    """Processors worker: scans.raw -> decode, validate, dedup, repeats, enrich with the
    premises registry -> scans.enriched; invalid scans and scans whose premises never
    arrives -> scans.dlq. State in Faust tables with changelogs.

    Stops gracefully on SIGTERM or Ctrl-C. Kafka from SCANTRACE_KAFKA__BOOTSTRAP (or the
    running local services); the core's horizons from SCANTRACE_CORE__*.
    """
    from prometheus_client import CollectorRegistry

    from ingest.kafka_probe import check_kafka
    from processors.worker_settings import WorkerSettings

    changes = {
        k: v
        for k, v in {
            "metrics_port": metrics_port,
            "metrics_host": metrics_host,
            "processing_guarantee": processing_guarantee,
            "app_id": app_id,
            "data_dir": data_dir,
            "batch_max_records": batch_max_records,
            "log_level": log_level,
        }.items()
        if v is not None
    }
    settings = WorkerSettings().with_options(**changes)
    if settings.worker.data_dir is None:
        settings = settings.with_options(data_dir=default_data_dir())
    kafka = settings.kafka
    check_kafka(kafka, [kafka.raw, kafka.premises, kafka.enriched, kafka.dlq])
    run(settings, CollectorRegistry())


def default_data_dir() -> Path:
    """Faust's working folder when none is set: local state, never the current folder."""
    from scantrace.settings import ServicesSettings

    path = ServicesSettings().state_dir / "worker-data"
    path.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return path


def run(settings: WorkerSettings, registry: CollectorRegistry) -> None:
    """Build the app and run a Faust worker for it until SIGTERM/SIGINT (or a crash)."""
    import faust

    from processors.app import create_app
    from scantrace.logs import formatter_config

    level = settings.worker.log_level.upper()
    app = create_app(settings, registry)
    faust_worker = faust.Worker(
        app,
        loglevel=level,
        quiet=True,  # no banner
        redirect_stdouts=False,
        logging_config={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": formatter_config("worker")},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "plain",
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"level": level, "handlers": ["stderr"]},
            # Faust, mode and aiokafka narrate every rebalance and recovery step at INFO,
            # also through the Faust services defined in processors (their class's module).
            "loggers": {
                name: {"level": "DEBUG" if level == "DEBUG" else "WARNING"}
                for name in (
                    "faust",
                    "mode",
                    "aiokafka",
                    "kafka",
                    "processors.app",
                    "processors.tables",
                    "processors.faust_transport",
                )
            },
        },
    )
    logging.getLogger("scantrace.worker").setLevel(level)
    faust_worker.execute_from_commandline()
