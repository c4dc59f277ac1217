"""`scantrace load`: replay a scans file against the gateway or straight into Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import click

from ingest.errors import InvalidInput
from scantrace import progress
from scantrace import synth as gen
from scantrace.commands import InputFile
from scantrace.loader import load_http


@click.command()
@click.argument("scans_file", type=InputFile(path_type=str))
@click.option(
    "--gateway",
    "gateway_url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Gateway base URL",
)
@click.option(
    "--token",
    envvar="SCANTRACE_LOAD__TOKEN",
    show_envvar=True,
    default=None,
    help="Gateway bearer token",
)
@click.option(
    "--kafka",
    "direct",
    is_flag=True,
    help="Publish straight to Kafka (ingest.publisher) instead of the gateway",
)
@click.option("--rate", type=float, default=0.0, show_default=True, help="Scans/s, 0 = unlimited")
@click.option("--batch", default=1000, show_default=True, help="Scans per request")
@click.option("--concurrency", default=4, show_default=True, help="Requests in flight")
@click.option("--json", "as_json", is_flag=True, help="The outcome as one JSON object")
def load(
    scans_file: str,
    gateway_url: str,
    token: str | None,
    direct: bool,
    rate: float,
    batch: int,
    concurrency: int,
    as_json: bool,
) -> None:
    """Replay SCANS_FILE (.msgpack or .jsonl from `scantrace synth scans`). With --kafka,
    Kafka from SCANTRACE_KAFKA__BOOTSTRAP (or the running local services).

    \b
    Example: scantrace load out/scans.msgpack --token TOKEN --rate 2000
    """
    if not direct:
        url = urlsplit(gateway_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidInput(
                f"--gateway {gateway_url!r} is not an http(s) URL",
                hint="give one like http://127.0.0.1:8080",
            )
        if not token:
            raise click.UsageError("--token or SCANTRACE_LOAD__TOKEN is required for the gateway")
    scans = list(gen.read_scans(scans_file))
    if direct:
        from ingest.kafka_probe import check_kafka
        from ingest.publisher import ScanPublisher
        from ingest.registry import RegistrySettings

        t0 = time.monotonic()
        kafka = RegistrySettings().kafka  # SCANTRACE_KAFKA__*
        check_kafka(kafka, [kafka.raw])
        with (
            progress.ticker(f"publishing {len(scans)} scans to Kafka"),
            ScanPublisher(kafka, gateway_id="load") as pub,
        ):
            rejected = pub.publish_many(scans)
            pub.flush()
        took = time.monotonic() - t0
        published = len(scans) - len(rejected)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "to": "kafka",
                        "published": published,
                        "rejected": len(rejected),
                        "seconds": round(took, 3),
                    }
                )
            )
            return
        click.echo(
            f"published {published} scans to Kafka in {took:.1f}s, {len(rejected)} rejected locally"
        )
        return
    assert token is not None
    with progress.bar(len(scans), "sending scans") as bar:
        report = asyncio.run(
            load_http(
                scans,
                f"{gateway_url.rstrip('/')}/v1/scans",
                token,
                batch=batch,
                rate=rate,
                concurrency=concurrency,
                answered=bar.update,
            )
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "to": "gateway",
                    "sent": report.sent,
                    "accepted": report.accepted,
                    "rejected": dict(report.rejected),
                    "http_errors": {str(k): v for k, v in report.http_errors.items()},
                    "seconds": round(report.seconds, 3),
                }
            )
        )
        return
    click.echo(
        f"sent {report.sent} scans in {report.seconds:.1f}s: accepted {report.accepted} "
        f"({report.rate:,.0f}/s), rejected {sum(report.rejected.values())} "
        f"{dict(report.rejected)}, HTTP errors {dict(report.http_errors)}"
    )
