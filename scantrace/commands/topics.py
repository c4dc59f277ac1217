"""`scantrace topics describe`: partitions, leaders, in-sync replicas, under-replicated
partitions and each component's consumer lag; `scantrace topics create`: the missing
topics made from the settings (`scantrace.topics`)."""

from __future__ import annotations

import json
import sys

import click


@click.group()
def topics() -> None:
    """The pipeline's Kafka topics."""


def component_groups() -> dict[str, tuple[str, list[str]]]:
    """`{component: (consumer group, topics it reads)}` from the environment's settings."""
    from processors.worker_settings import WorkerSettings
    from sinks.settings import SinkSettings

    sink = SinkSettings()
    kafka = sink.kafka
    worker = WorkerSettings(kafka=kafka)
    return {
        "worker": (worker.app_id, [kafka.raw, kafka.premises]),
        "sink": (sink.sink.group_id, [kafka.enriched, kafka.premises, kafka.dlq]),
    }


@topics.command("describe")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
def describe(as_json: bool) -> None:
    """Partitions, leaders, ISR, under-replicated partitions, consumer lag per component.
    Exit status 1 when a partition is under-replicated or offline."""
    from scantrace.topics import describe as describe_topics
    from scantrace.topics import render
    from sinks.settings import SinkSettings

    kafka = SinkSettings().kafka
    kafka.servers()
    d = describe_topics(kafka, component_groups())  # errors: the shell's one line and code
    if as_json:
        click.echo(json.dumps(d.as_json(), indent=2))
    else:
        click.echo(render(d))
    offline = any(p.leader < 0 for t in d.topics for p in t.partitions)
    sys.exit(1 if d.under_replicated or offline else 0)


@topics.command("create")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=None,
    envvar="SCANTRACE_KAFKA__PARTITIONS",
    show_envvar=True,
    help="Partitions of every topic (scans.raw and premises must match: the worker joins "
    "them per partition) [default 4]",
)
@click.option(
    "--replication-factor",
    type=click.IntRange(1, 32),
    default=None,
    envvar="SCANTRACE_KAFKA__REPLICATION_FACTOR",
    show_envvar=True,
    help="Replicas of each partition, at most the number of brokers [default 1; on a local "
    "cluster of `services up --brokers N`, that cluster's]",
)
@click.option(
    "--min-insync-replicas",
    type=click.IntRange(1, 32),
    default=None,
    help="Replicas that must have a write before it is acknowledged (acks=all) "
    "[default: the replication factor minus one, at least 1]",
)
@click.option(
    "--retention-ms",
    type=click.IntRange(1),
    default=None,
    help="How long scans.raw, scans.enriched and scans.dlq keep records [default: "
    "SCANTRACE_KAFKA__RAW_RETENTION_MS, __ENRICHED_RETENTION_MS, __DLQ_RETENTION_MS, 7 days "
    "each]; premises is compacted and kept",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
def create(
    partitions: int | None,
    replication_factor: int | None,
    min_insync_replicas: int | None,
    retention_ms: int | None,
    as_json: bool,
) -> None:
    """Create the pipeline's topics that are missing (scans.raw, scans.enriched, scans.dlq,
    premises compacted), with their partitions, replication factor, min.insync.replicas
    and retention. Safe to run again: an existing topic is reported (`exists`) and left
    as it is, configs included. A topic with fewer partitions than asked is refused
    (exit 2): partitions are never added (keys would move to other partitions, away from
    the worker's per-partition state). Kafka from SCANTRACE_KAFKA__* (or the running local
    services, as their admin user on a secured broker)."""
    from scantrace.topics import create_topics, render_created
    from sinks.settings import SinkSettings

    kafka = SinkSettings().kafka
    changes: dict[str, int] = {}
    if partitions is not None:
        changes["partitions"] = partitions
    if replication_factor is not None:
        changes["replication_factor"] = replication_factor
    if retention_ms is not None:
        for name in ("raw", "enriched", "dlq"):
            changes[f"{name}_retention_ms"] = retention_ms
    kafka = kafka.model_copy(update=changes)
    # errors: the shell's one line and code
    done = create_topics(kafka, min_insync_replicas=min_insync_replicas)
    click.echo(json.dumps(done.as_json(), indent=2) if as_json else render_created(done))
