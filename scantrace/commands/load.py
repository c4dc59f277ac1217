"""`scantrace load`: replay a scans file against the gateway or straight into Kafka."""

from __future__ import annotations

import asyncio
import os
import time

import click

from scantrace import synth as gen
from scantrace.loader import load_http


@click.command()
@click.argument("scans_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--gateway",
    "gateway_url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Gateway base URL",
)
@click.option("--token", default=None, help="Gateway bearer token [env: SCANTRACE_LOAD__TOKEN]")
@click.option(
    "--kafka",
    "direct",
    is_flag=True,
    help="Publish straight to Kafka (ingest.publisher) instead of the gateway",
)
@click.option("--rate", type=float, default=0.0, show_default=True, help="Scans/s, 0 = unlimited")
@click.option("--batch", default=1000, show_default=True, help="Scans per request")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight")
def load(
    scans_file: str,
    gateway_url: str,
    token: str | None,
    direct: bool,
    rate: float,
    batch: int,
    concurrency: int,
) -> None:
    """Replay SCANS_FILE (.msgpack or .jsonl from `scantrace synth scans`)."""
    scans = list(gen.read_scans(scans_file))
    if direct:
        from ingest.kafka_settings import KafkaSettings
        from ingest.publisher import ScanPublisher

        t0 = time.monotonic()
        kafka = KafkaSettings(bootstrap=os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP", ""))
        with ScanPublisher(kafka, gateway_id="load") as pub:
            rejected = pub.publish_many(scans)
            pub.flush()
        took = time.monotonic() - t0
        click.echo(
            f"published {len(scans) - len(rejected)} scans to Kafka in {took:.1f}s, "
            f"{len(rejected)} rejected locally"
        )
        return
    token = token or os.environ.get("SCANTRACE_LOAD__TOKEN", "")
    if not token:
        raise click.UsageError("--token or SCANTRACE_LOAD__TOKEN is required for the gateway")
    report = asyncio.run(
        load_http(
            scans,
            f"{gateway_url.rstrip('/')}/v1/scans",
            token,
            batch=batch,
            rate=rate,
            concurrency=concurrency,
        )
    )
    click.echo(
        f"sent {report.sent} scans in {report.seconds:.1f}s: accepted {report.accepted} "
        f"({report.rate:,.0f}/s), rejected {sum(report.rejected.values())} "
        f"{dict(report.rejected)}, HTTP errors {dict(report.http_errors)}"
    )
