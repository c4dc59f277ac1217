"""A real Prometheus server scrapes a running pipeline: every component's scan counter
is non-zero in its query API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pipeline_kit import PIPELINE_TOKEN

from ingest.kafka_settings import KafkaSettings
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from scantrace.services.process import free_port

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not os.environ.get("CI"),
    reason="Debian's prometheus package is not installed (apt-get install prometheus)",
)

COUNTERS = {
    "gateway": "scantrace_gateway_scans_accepted_total",
    "worker": "scantrace_worker_scans_enriched_total",
    "sink": "scantrace_sink_rows_written_total",
}


@pytest.fixture
def prometheus(pipeline: Pipeline, tmp_path: Path) -> Iterator[int]:
    assert PROMETHEUS is not None, "CI must install prometheus"
    port = free_port()
    targets = {
        "gateway": pipeline.gateway_port,
        "worker": pipeline.worker_metrics_port,
        "sink": pipeline.sink_metrics_port,
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is valid YAML
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
    except OSError:
        return []
    return list(body["data"]["result"]) if body.get("status") == "success" else []


def test_prometheus_sees_scans_counted_by_every_component(
    pipeline: Pipeline, prometheus: int, kafka_settings: KafkaSettings
) -> None:
    premises = synth.generate_premises(3, 40)
    day = synth.generate_scans(
        3, premises, datetime.now(tz=synth.TZ).date() - timedelta(days=1), persons=100, scans=300
    )
    publish_registry(kafka_settings, premises)
    report = asyncio.run(
        load_http(day.scans, f"http://127.0.0.1:{pipeline.gateway_port}/v1/scans", PIPELINE_TOKEN)
    )
    assert report.accepted == day.truth.valid

    values: dict[str, float] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for job, metric in COUNTERS.items():
            result = _query(prometheus, f'sum({metric}{{job="{job}"}})')
            values[job] = float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]
        if all(values.values()):
            break
        time.sleep(1)
    assert all(values.values()), f"counters seen by Prometheus: {values}"
    up = _query(prometheus, "up")
    assert {r["metric"]["job"]: r["value"][1] for r in up} == dict.fromkeys(COUNTERS, "1")  # type: ignore[index]
