"""`scantrace demo`: the main job on the local services, printing what it did.

A synthetic Ninh Thuận day goes through the whole pipeline (`scantrace run`: gateway,
worker, sink): premises imported, scans loaded through the gateway, waited for in
ClickHouse, counts printed per stage; then one case is traced and the weekly report
written. The services stay up for your own queries (`scantrace services down` stops them).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

import click
from prometheus_client.parser import text_string_to_metric_families

from ingest.contract import now_ms
from ingest.premises import Premises
from ingest.registry import plan_import, publish_registry, read_registry
from scantrace import synth
from scantrace.commands import OUT_DIR
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from scantrace.services.manager import local_kafka
from scantrace.services.process import free_port
from scantrace.settings import ServicesSettings
from sinks.client import connect
from sinks.settings import SinkSettings

TOKEN = "demo-token"  # noqa: S105 - the demo gateway's own credential, loopback only


def _metric_sums(port: int) -> dict[str, float]:
    """Sample values of a component's /metrics, summed over labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _wait(pipeline: Pipeline, check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = pipeline.failed()
        if dead:
            raise click.ClickException(f"{dead} exited:\n{pipeline.log_tail(dead)}")
        try:
            done = check()  # type: ignore[operator]
        except OSError:  # a component not listening yet (the worker takes seconds to start)
            done = False
        if done:
            return
        time.sleep(1)
    raise click.ClickException(f"timed out waiting for {what}; logs in {pipeline.log_dir}")


@click.command()
@click.option("--seed", default=2021, show_default=True)
@click.option(
    "--scans",
    "count",
    type=int,
    default=None,
    help="Scans to generate [default: a whole day, ~340k]",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=str(OUT_DIR),
    show_default=True,
    help="Where the data, the trace and the report go",
)
def demo(seed: int, count: int | None, out_dir: str) -> None:
    """A synthetic day through gateway, worker and sink into ClickHouse; a trace; a report."""
    settings = SinkSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    day = (datetime.now(tz=synth.TZ) - timedelta(days=1)).date()
    premises, scan_day = _generate(seed, count, day, out)
    _import_premises(settings, premises)
    case = _through_the_pipeline(settings, scan_day)
    _trace_and_report(case, day, out)


def _generate(
    seed: int, count: int | None, day: date, out: Path
) -> tuple[list[Premises], synth.ScanDay]:
    """The province's premises (written with the district populations to `out`) and a
    day of scans."""
    premises = synth.generate_premises(seed)
    synth.write_premises_csv(premises, out / "premises.csv")
    synth.write_population_csv(out / "population.csv")
    scan_day = synth.generate_scans(seed, premises, day, scans=count)
    click.echo(
        f"generated {len(premises)} premises and {len(scan_day)} scans for {day} "
        f"({scan_day.truth.persons} persons) in {out}/"
    )
    return premises, scan_day


def _import_premises(settings: SinkSettings, premises: list[Premises]) -> None:
    # The registry import is the admin's job; gateway, worker and sink log in as
    # themselves (each child of the pipeline picks its own user).
    registry_kafka = local_kafka("premises", settings.kafka)
    plan = plan_import(premises, read_registry(registry_kafka), now_ms())
    published = publish_registry(registry_kafka, plan.changes)
    click.echo(
        f"premises import: {published} new or changed, {len(premises) - published} unchanged"
    )


def _through_the_pipeline(settings: SinkSettings, scan_day: synth.ScanDay) -> str:
    """Start gateway, worker and sink, load the day through the gateway, wait for each
    stage and print its counts; returns a person to trace."""
    gateway_port, worker_port, sink_port = free_port(), free_port(), free_port()
    os.environ["SCANTRACE_GATEWAY__TOKENS"] = json.dumps({TOKEN: "demo-gateway"})
    pipeline = Pipeline(
        gateway_port, worker_port, sink_port, ServicesSettings().state_dir / "logs" / "demo"
    )
    pipeline.start()
    try:
        _wait(pipeline, lambda: _ready(gateway_port), 90, "the gateway")
        client = connect(settings.clickhouse)
        lo, hi = scan_day.day_start_ms, scan_day.day_end_ms

        def stored() -> int:
            return int(
                client.execute(
                    "SELECT uniqExact(event_id) FROM scans WHERE scanned_at >= "
                    "fromUnixTimestamp64Milli(toInt64(%(lo)s)) AND scanned_at < "
                    "fromUnixTimestamp64Milli(toInt64(%(hi)s))",
                    {"lo": lo, "hi": hi},
                )[0][0]
            )

        before = stored()
        t0 = time.monotonic()
        report = asyncio.run(
            load_http(
                scan_day.scans,
                f"http://127.0.0.1:{gateway_port}/v1/scans",
                TOKEN,
                batch=1000,
                concurrency=4,
            )
        )
        click.echo(
            f"gateway: {report.sent} received = {report.accepted} accepted + "
            f"{sum(report.rejected.values())} rejected {dict(report.rejected)} "
            f"({report.rate:,.0f} scans/s)"
        )
        enriched = _worker_counts(pipeline, worker_port, report.accepted)
        truth = scan_day.truth
        _wait(
            pipeline,
            lambda: stored() - before >= enriched or stored() >= truth.stored - truth.repeats,
            600,
            "ClickHouse",
        )
        click.echo(
            f"sink:    ClickHouse holds {stored()} distinct scans for {scan_day.day} "
            f"(expected {truth.stored - truth.repeats}: {truth.stored} unique at known "
            f"premises - {truth.repeats} repeats), {time.monotonic() - t0:.0f}s after "
            f"the first scan was sent"
        )
        sm = _metric_sums(sink_port)
        rows = int(sm.get("scantrace_sink_rows_written_total", 0))
        batches = int(sm.get("scantrace_sink_batches_total", 0))
        click.echo(f"         the sink wrote {rows} rows in {batches} batches")
        client.disconnect()
    finally:
        pipeline.stop()
    return str(scan_day.scans[len(scan_day.scans) // 3]["person_id"])


def _worker_counts(pipeline: Pipeline, worker_port: int, accepted: int) -> int:
    """Wait until the worker has taken every accepted scan, print its accounting and
    return how many it enriched."""

    def worker_done() -> bool:
        try:
            m = _metric_sums(worker_port)
        except OSError:  # its metrics are served once it has joined its group
            return False
        return m.get("scantrace_worker_events_in_total", 0) >= accepted

    _wait(pipeline, worker_done, 600, "the worker")
    m = _metric_sums(worker_port)
    enriched = int(m.get("scantrace_worker_scans_enriched_total", 0))
    dup, rep = (
        int(m.get("scantrace_worker_duplicates_total", 0)),
        int(m.get("scantrace_worker_repeats_total", 0)),
    )
    dead, parked = (
        int(m.get("scantrace_worker_dead_letters_total", 0)),
        int(m.get("scantrace_worker_parked_scans", 0)),
    )
    ins = int(m.get("scantrace_worker_events_in_total", 0))
    click.echo(
        f"worker:  {ins} in = {enriched} enriched + {dup} duplicates + {rep} repeats "
        f"+ {dead} dead-lettered + {parked} parked"
        f"{'' if ins == enriched + dup + rep + dead + parked else '  (DOES NOT ADD UP)'}"
    )
    return enriched


def _trace_and_report(case: str, day: date, out: Path) -> None:
    """Trace `case` over `day` and write the week's report, with the CLI's own commands."""
    lo, hi = synth.day_bounds_ms(day)
    cli = [sys.executable, "-m", "scantrace.cli"]
    frm = datetime.fromtimestamp(lo / 1000, tz=synth.TZ).isoformat()
    to = datetime.fromtimestamp(hi / 1000, tz=synth.TZ).isoformat()
    trace_cmd = [*cli, "trace", case, "--from", frm, "--to", to]
    click.echo(f"\ntrace of case {case} (PC-COVID rule: scanned within 60 min at the same place):")
    subprocess.run(trace_cmd, check=False)
    subprocess.run(
        [*trace_cmd, "--format", "json", "--out", str(out / "trace.json")],
        check=False,
        capture_output=True,
    )
    iso = day.isocalendar()
    week = f"{iso.year}-W{iso.week:02d}"
    report_path = out / f"report-{week}.html"
    subprocess.run(
        [
            *cli,
            "report",
            "weekly",
            "--week",
            week,
            "--out",
            str(report_path),
            "--population",
            str(out / "population.csv"),
        ],
        check=False,
    )
    click.echo(f"\nweekly report:  {report_path.resolve()}")
    click.echo(f"trace (JSON):   {(out / 'trace.json').resolve()}")
    click.echo(
        "metrics:        scantrace run serves gateway :8080/metrics, worker :9101/metrics, "
        "sink :9102/metrics"
    )
    click.echo(f"trace another:  scantrace trace PERSON_ID --from {frm} --to {to}")
    click.echo("services:       still running (scantrace services status; scantrace services down)")
