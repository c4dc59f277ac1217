"""The gateway as a real process (`scantrace gateway`) on the real broker, against bodies
and clients built to stall it or blow it up: many empty gzip members, a million empty
msgpack maps, clients that stall in their headers or their body, more requests and bytes
than it takes at once. It answers each with a 4xx or a 503 and keeps serving."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from kafka import KafkaConsumer

from ingest.contract import now_ms
from ingest.kafka_settings import KafkaSettings
from ingest.wire import split_raw_frame
from scantrace.services.process import free_port

TOKEN = "limits-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MiB = 1024 * 1024


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self, field: str) -> int:
        """A `/proc/PID/status` figure in bytes (VmRSS, VmHWM: kB there)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not in /proc/{self.proc.pid}/status")

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0


@contextmanager
def gateway_process(kafka: KafkaSettings, tmp_path: Path, **options: object) -> Iterator[Gateway]:
    """`scantrace gateway` with `SCANTRACE_GATEWAY__<OPTION>` settings; stopped by PID."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN: "gw-limits"}))
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SCANTRACE_KAFKA__BOOTSTRAP": kafka.bootstrap,
        "SCANTRACE_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        **{f"SCANTRACE_GATEWAY__{k.upper()}": str(v) for k, v in options.items()},
    }
    log = (tmp_path / f"gateway-{port}.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scantrace.cli",
            "gateway",
            "--port",
            str(port),
            "--tokens-file",
            str(tokens),
            "--metrics-port",
            str(metrics_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    gateway = Gateway(proc, port, metrics_port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / f"gateway-{port}.log").read_text()
            try:
                with urllib.request.urlopen(f"{gateway.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gateway not ready in 30 s"
            time.sleep(0.1)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def post(
    url: str, body: bytes, content_type: str = "application/json", **headers: str
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        f"{url}/v1/scans",
        data=body,
        headers={**AUTH, "Content-Type": content_type, **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def scans(n: int) -> list[dict[str, Any]]:
    now = now_ms()
    return [
        {
            "event_id": f"evt-{uuid.uuid4().hex[:12]}",
            "person_id": f"person-{i}",
            "premises_id": f"NT-{i % 5:04d}",
            "scanned_at": now - 60_000,
        }
        for i in range(n)
    ]


class HealthPoller(threading.Thread):
    """GET /healthz every 20 ms until stopped; keeps each answer's status and seconds."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as resp:
                    status = resp.status
            except OSError:
                status = 0
            self.answers.append((status, time.monotonic() - started))
            time.sleep(0.02)


def slow_client(port: int, head: bytes, body_part: bytes = b"") -> socket.socket:
    """A connection that sends `head` (and the start of a body), then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body_part)
    return sock


def post_head(length: int) -> bytes:
    return (
        f"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed."""
    started = time.monotonic()
    sock.settimeout(timeout_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def wait_for(check: Any, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


# -- bodies --------------------------------------------------------------------------


def test_16_mib_of_empty_gzip_members_is_answered_in_2_s_while_healthz_answers(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    member = gzip.compress(b"")
    body = member * ((16 * MiB) // len(member))
    assert 16 * MiB - len(member) < len(body) <= 16 * MiB
    with gateway_process(kafka_settings, tmp_path) as gw:
        poller = HealthPoller(gw.url)
        poller.start()
        try:
            time.sleep(0.1)
            started = time.monotonic()
            status, payload, _ = post(gw.url, body, **{"Content-Encoding": "gzip"})
            elapsed = time.monotonic() - started
            time.sleep(0.1)
        finally:
            poller.stop.set()
            poller.join(15)
        assert status in (400, 413), payload
        assert payload["error"] == "too_many_gzip_members"
        # The bound for this body (upload over loopback included), not a benchmark.
        assert elapsed < 2.0, f"answered in {elapsed:.2f} s"
        assert poller.answers and {s for s, _ in poller.answers} == {200}
        assert max(t for _, t in poller.answers) < 2.0
        assert (
            gw.metric('scantrace_gateway_requests_refused_total{reason="too_many_gzip_members"}')
            == 1
        )


def test_a_million_empty_msgpack_maps_are_refused_without_64_mib_more_resident(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    bomb = b"\xdd\x00\x0f\x42\x40" + b"\x80" * 1_000_000
    with gateway_process(kafka_settings, tmp_path) as gw:
        warm = msgpack.packb(scans(2000))  # a real batch first: buffers and code paths warm
        assert post(gw.url, warm, "application/msgpack")[0] == 200
        peak_before, rss_before = gw.status("VmHWM"), gw.status("VmRSS")
        status, payload, _ = post(gw.url, bomb, "application/msgpack")
        peak_after, rss_after = gw.status("VmHWM"), gw.status("VmRSS")
        assert (status, payload["error"]) == (413, "batch_too_large")
        # The peak (high-water mark), not only what is resident once it is over.
        assert peak_after - peak_before < 64 * MiB, (peak_before, peak_after)
        assert rss_after - rss_before < 64 * MiB, (rss_before, rss_after)
        # the same bytes as a map body, and gzip-compressed: refused the same way
        as_map = b"\x81\xa5scans" + bomb
        assert post(gw.url, as_map, "application/msgpack")[0] == 413
        zipped = gzip.compress(bomb)
        status, _, _ = post(gw.url, zipped, "application/msgpack", **{"Content-Encoding": "gzip"})
        assert status == 413
        assert gw.status("VmHWM") - peak_before < 64 * MiB


# -- slow clients --------------------------------------------------------------------


def test_slow_clients_are_cut_off_after_the_timeouts(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    with gateway_process(kafka_settings, tmp_path, header_timeout_s=1, body_timeout_s=1) as gw:
        in_head = slow_client(gw.port, b"POST /v1/scans HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        in_body = slow_client(gw.port, post_head(1000), b'{"scans": [')
        idle = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
        try:
            data, closed_after = read_until_closed(in_body, 20)
            assert data.startswith(b"HTTP/1.1 408"), data[:200]
            assert b'"error":"body_timeout"' in data
            assert closed_after < 20
            data, closed_after = read_until_closed(in_head, 20)
            assert data == b""  # no request yet, nothing to answer: closed
            assert closed_after < 20
            assert read_until_closed(idle, 20)[0] == b""
        finally:
            for sock in (in_head, in_body, idle):
                sock.close()
        assert post(gw.url, json.dumps({"scans": scans(3)}).encode())[0] == 200
        assert gw.metric('scantrace_gateway_requests_refused_total{reason="body_timeout"}') == 1


# -- in flight -----------------------------------------------------------------------


def test_requests_and_bytes_in_flight_beyond_the_limits_are_503_with_retry_after(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    options = {
        "max_in_flight_requests": 3,
        "max_body_bytes": MiB,
        "max_in_flight_bytes": 2 * MiB,
        "body_timeout_s": 60,
        "retry_after_s": 3,
    }
    batch = scans(20)
    with gateway_process(kafka_settings, tmp_path, **options) as gw:
        in_flight = "scantrace_gateway_requests_in_flight"
        # two slow requests hold 1.6 MiB between them (their Content-Length)
        slow = [
            slow_client(gw.port, post_head(length), b'{"scans": [') for length in (MiB, 600 * 1024)
        ]
        wait_for(lambda: gw.metric(in_flight) == 2)
        padded = json.dumps({"scans": batch}).encode() + b" " * (600 * 1024)
        status, payload, headers = post(gw.url, padded)
        assert (status, payload["error"], headers["Retry-After"]) == (503, "in_flight_bytes", "3")
        # a third one takes the last slot
        slow.append(slow_client(gw.port, post_head(1000), b'{"scans": ['))
        wait_for(lambda: gw.metric(in_flight) == 3)
        status, payload, headers = post(gw.url, json.dumps({"scans": batch}).encode())
        assert (status, payload["error"], headers["Retry-After"]) == (
            503,
            "in_flight_requests",
            "3",
        )
        with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as resp:
            assert resp.status == 200
        for sock in slow:
            sock.close()
        wait_for(lambda: gw.metric(in_flight) == 0)
        assert gw.metric("scantrace_gateway_bytes_in_flight") == 0
        status, payload, _ = post(gw.url, padded)
        assert (status, payload) == (200, {"accepted": 20, "rejected": []})
        refused = "scantrace_gateway_requests_refused_total"
        assert gw.metric(f'{refused}{{reason="in_flight_bytes"}}') == 1
        assert gw.metric(f'{refused}{{reason="in_flight_requests"}}') == 1
        # /metrics lives on its own port only
        try:
            urllib.request.urlopen(f"{gw.url}/metrics", timeout=5)
            raise AssertionError("/metrics answered on the main port")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    published = consume_event_ids(kafka_settings, 20)
    assert published == {s["event_id"] for s in batch}


def consume_event_ids(kafka: KafkaSettings, expected: int, timeout_s: float = 15) -> set[str]:
    consumer = KafkaConsumer(
        kafka.raw,
        bootstrap_servers=kafka.servers(),
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    ids: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(ids) < expected and time.monotonic() < deadline:
            for msg in consumer:
                for value in split_raw_frame(msg.value) or [msg.value]:
                    ids.add(msgpack.unpackb(value)["event_id"])
    finally:
        consumer.close()
    return ids
