"""`scantrace sink`: scans.enriched, premises and scans.dlq into ClickHouse."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from scantrace.commands import LOG_LEVEL
from scantrace.logs import setup_logging


@click.command()
@click.option(
    "--batch-rows",
    type=click.IntRange(1, 1_000_000),
    default=None,
    help="Rows per insert [default 50000]",
    envvar="SCANTRACE_SINK__BATCH_ROWS",
    show_envvar=True,
)
@click.option(
    "--batch-seconds",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Flush a caught-up partition after this long [default 1]",
    envvar="SCANTRACE_SINK__BATCH_SECONDS",
    show_envvar=True,
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /metrics on this port, 0 = off [default 0]",
    envvar="SCANTRACE_SINK__METRICS_PORT",
    show_envvar=True,
)
@click.option(
    "--metrics-host",
    default=None,
    help="Interface for /metrics [default 0.0.0.0]",
    envvar="SCANTRACE_SINK__METRICS_HOST",
    show_envvar=True,
)
@click.option(
    "--group-id",
    default=None,
    help="Kafka consumer group [default scantrace-sink]",
    envvar="SCANTRACE_SINK__GROUP_ID",
    show_envvar=True,
)
@LOG_LEVEL
def sink(
    batch_rows: int | None,
    batch_seconds: float | None,
    metrics_port: int | None,
    metrics_host: str | None,
    group_id: str | None,
    log_level: str,
) -> None:
    """ClickHouse sink: Kafka scans.enriched -> scans, premises -> premises,
    scans.dlq -> dead_letters; batched, idempotent, offsets committed after each insert.

    Stops on SIGTERM or Ctrl-C after flushing and committing what it holds.
    Kafka and ClickHouse from SCANTRACE_KAFKA__BOOTSTRAP and SCANTRACE_CLICKHOUSE__URL
    (or the running local services); the secret of the keyed person hashes of the report
    from SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY (required; the local services make one).
    """
    from ingest.admin import ensure_topics
    from ingest.kafka_probe import check_kafka
    from sinks.consume_loop import SinkFatal, serve
    from sinks.settings import SinkSettings

    setup_logging(log_level, "sink")
    changes = {
        k: v
        for k, v in {
            "batch_rows": batch_rows,
            "batch_seconds": batch_seconds,
            "metrics_port": metrics_port,
            "metrics_host": metrics_host,
            "group_id": group_id,
        }.items()
        if v is not None
    }
    settings = SinkSettings().with_options(**changes)
    settings.clickhouse.parts()
    settings.clickhouse.person_hash_key_pair()  # no key: no rollup, so no start
    kafka = settings.kafka
    check_kafka(kafka, [kafka.enriched, kafka.premises, kafka.dlq])

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("scantrace.sink").info("signal %d: flushing and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ensure_topics(settings.kafka)
    try:
        serve(settings, stop=stop)
    except SinkFatal as exc:
        exc.hint = "ClickHouse refuses writes: fix the schema, the grants or the certificates"
        raise
