"""Alerts reach a person: a real Prometheus evaluates the project's alert rules against a
running pipeline and sends to a real Alertmanager, routed by the project's config, which
posts to a webhook receiver run by this test. The sink is stopped while scans keep
arriving: `ScantraceComponentDown` for the sink and `ScantraceNoScansStored` arrive.

The rules and the Alertmanager config are rendered from the files in deploy/ with only
their time scale changed (minutes of `for:`, ranges and grouping become seconds), so the
expressions and routes under test are the real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_kit import PIPELINE_TOKEN

from ingest.kafka_settings import KafkaSettings
from ingest.registry import publish_registry
from scantrace import synth
from scantrace.loader import load_http
from scantrace.pipeline import Pipeline
from scantrace.services.process import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    (PROMETHEUS is None or ALERTMANAGER is None) and not os.environ.get("CI"),
    reason="Debian's prometheus and prometheus-alertmanager packages are not installed",
)

DURATION_IN_MINUTES = re.compile(r"\b(\d+)m\b")


def seconds_for_minutes(text: str) -> str:
    """`[10m]` -> `[10s]`, `5m` -> `5s`: the same rule, sixty times faster."""
    return DURATION_IN_MINUTES.sub(r"\1s", text)


def render_rules(path: Path) -> dict[str, Any]:
    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8"))
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["expr"] = seconds_for_minutes(rule["expr"])
            if "for" in rule:
                rule["for"] = seconds_for_minutes(rule["for"])
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return rules  # type: ignore[no-any-return]


def render_alertmanager(path: Path, webhook_url: str) -> dict[str, Any]:
    """The real routes, inhibitions and receivers, with grouping in seconds, the on-call
    webhook pointed at this test, and no e-mail (no SMTP server here)."""
    source = REPO / "deploy/alertmanager"
    config = yaml.safe_load((source / "alertmanager.yml").read_text(encoding="utf-8"))
    config["templates"] = [str(source / t) for t in config["templates"]]

    def fast(route: dict[str, Any]) -> None:
        route.update(group_wait="1s", group_interval="1s")
        if "repeat_interval" in route:
            route["repeat_interval"] = "1m"
        for child in route.get("routes", []):
            fast(child)

    fast(config["route"])
    for receiver in config["receivers"]:
        receiver.pop("email_configs", None)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook.pop("http_config", None)  # its token file exists only where deployed
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return config  # type: ignore[no-any-return]


class Webhook:
    """An HTTP receiver of Alertmanager's webhook posts, on 127.0.0.1."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) of every alert posted so far."""
        with self.lock:
            return [(p["receiver"], a) for p in self.posts for a in p["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


STALL_SECONDS = 10


@pytest.fixture
def short_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker and sink declare themselves stalled after 10 s without a loop turn (set
    before the `pipeline` fixture starts them)."""
    monkeypatch.setenv("SCANTRACE_WORKER__STALL_SECONDS", str(STALL_SECONDS))
    monkeypatch.setenv("SCANTRACE_SINK__STALL_SECONDS", str(STALL_SECONDS))


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def alerting(pipeline: Pipeline, webhook: Webhook, tmp_path: Path) -> Iterator[int]:
    """Alertmanager and Prometheus on loopback, the rendered files; yields Prometheus'
    port. Both stopped by PID."""
    assert PROMETHEUS is not None and ALERTMANAGER is not None, "CI must install them"
    am_port, prom_port = free_port(), free_port()
    render_alertmanager(tmp_path / "alertmanager.yml", webhook.url)
    render_rules(tmp_path / "alerts.yml")
    targets = {
        "gateway": pipeline.gateway_port,
        "worker": pipeline.worker_metrics_port,
        "sink": pipeline.sink_metrics_port,
    }
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "alerts.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(prometheus_config), encoding="utf-8")
    procs = [
        start(
            [
                ALERTMANAGER,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            tmp_path / "alertmanager.log",
        )
    ]
    try:
        procs.append(
            start(
                [
                    PROMETHEUS,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                tmp_path / "prometheus.log",
            )
        )
        yield prom_port
    finally:
        for proc in reversed(procs):
            stop(proc)


def query(port: int, expr: str) -> float:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(url)
    if not body or body.get("status") != "success" or not body["data"]["result"]:
        return 0.0
    return float(body["data"]["result"][0]["value"][1])


class Feeder:
    """Scans to the gateway, a few every half second, until stopped."""

    def __init__(self, scans: list[dict[str, Any]], url: str) -> None:
        self.scans, self.url = scans, url
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            chunk = self.scans[i % len(self.scans) : i % len(self.scans) + 10]
            i += 10
            # A post may fail while the gateway stops at teardown: the next one is tried.
            with contextlib.suppress(Exception):
                asyncio.run(load_http(chunk, self.url, PIPELINE_TOKEN, retries=1))
            self.stopped.wait(0.5)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=30)


def firing(webhook: Webhook, alertname: str, **labels: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (receiver, a)
        for receiver, a in webhook.alerts()
        if a["status"] == "firing"
        and a["labels"].get("alertname") == alertname
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_a_stopped_sink_pages_the_webhook(
    short_stall: None,
    pipeline: Pipeline,
    alerting: int,
    webhook: Webhook,
    kafka_settings: KafkaSettings,
) -> None:
    premises = synth.generate_premises(5, 40)
    day = synth.generate_scans(
        5, premises, datetime.now(tz=synth.TZ).date() - timedelta(days=1), persons=200, scans=2000
    )
    publish_registry(kafka_settings, premises)
    gateway = f"http://127.0.0.1:{pipeline.gateway_port}/v1/scans"
    prom = alerting

    # Worker and sink loops turn, idle as they are: their liveness endpoints answer 200,
    # and still do well past the stall time (each turn of the loop beats).
    ports = {"worker": pipeline.worker_metrics_port, "sink": pipeline.sink_metrics_port}
    for name, port in ports.items():
        deadline = time.monotonic() + 60
        while status_of(f"http://127.0.0.1:{port}/healthz") != 200:
            assert time.monotonic() < deadline, f"{name}: /healthz never answered 200"
            time.sleep(0.5)
    until = time.monotonic() + 2.5 * STALL_SECONDS
    while time.monotonic() < until:
        for name, port in ports.items():
            assert status_of(f"http://127.0.0.1:{port}/healthz") == 200, name
        time.sleep(1)

    with Feeder(day.scans, gateway):
        # The pipeline stores scans, as Prometheus sees it, and nothing pages meanwhile.
        deadline = time.monotonic() + 120
        while query(prom, 'sum(scantrace_sink_rows_written_total{table="scans"})') == 0:
            dead = pipeline.failed()
            assert dead is None, f"{dead} exited:\n{pipeline.log_tail(dead, 40)}"
            assert time.monotonic() < deadline, "Prometheus never saw a stored scan"
            time.sleep(1)
        assert query(prom, 'up{job="sink"}') == 1
        assert firing(webhook, "ScantraceComponentDown") == []

        sink = pipeline.procs["sink"]
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=60)

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            down = firing(webhook, "ScantraceComponentDown", job="sink")
            unstored = firing(webhook, "ScantraceNoScansStored")
            if down and unstored:
                break
            time.sleep(1)
        else:
            raise AssertionError(
                f"alerts received: {[(r, a['labels']) for r, a in webhook.alerts()]}\n"
                f"alertmanager.log and prometheus.log are in the test's tmp_path"
            )

    for receiver, alert in (down[0], unstored[0]):
        assert receiver == "on-call"  # critical: the pager webhook
        assert alert["labels"]["severity"] == "critical"
        runbook = alert["annotations"]["runbook_url"]
        assert (REPO / runbook).is_file(), runbook
    assert down[0][1]["labels"]["instance"] == f"127.0.0.1:{pipeline.sink_metrics_port}"
    # The gateway and the worker stayed up: no page names them.
    assert firing(webhook, "ScantraceComponentDown", job="gateway") == []
    assert firing(webhook, "ScantraceComponentDown", job="worker") == []
