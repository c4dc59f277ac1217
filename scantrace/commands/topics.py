"""`scantrace topics describe`: partitions, leaders, in-sync replicas, under-replicated
partitions and each component's consumer lag (`scantrace.topics`)."""

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
