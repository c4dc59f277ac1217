"""The local services are the real thing, reachable by independent clients, and leave
nothing behind when stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from scantrace.services.manager import Endpoints
from scantrace.services.process import alive
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect

KCAT = shutil.which("kcat")


@pytest.mark.skipif(
    KCAT is None and not os.environ.get("CI"), reason="kcat not installed (apt-get install kcat)"
)
def test_kcat_produces_and_consumes(services: Endpoints) -> None:
    assert KCAT is not None, "CI must install kcat"
    topic = f"kcat-{uuid.uuid4().hex[:8]}"
    lines = [f"scan-{i}" for i in range(5)]
    subprocess.run(
        [KCAT, "-b", services.kafka_bootstrap, "-t", topic, "-P", "-K", ":"],
        input="\n".join(f"k{i}:{v}" for i, v in enumerate(lines)) + "\n",
        text=True,
        check=True,
        timeout=30,
    )
    out = subprocess.run(
        [
            KCAT,
            "-b",
            services.kafka_bootstrap,
            "-t",
            topic,
            "-C",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k=%s\n",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert sorted(out) == sorted(f"k{i}={v}" for i, v in enumerate(lines))


def test_clickhouse_is_26_or_newer(services: Endpoints) -> None:
    client = connect(ClickHouseSettings(url=services.clickhouse_url), database="default")
    try:
        version = client.execute("SELECT version()")[0][0]
        assert int(version.split(".")[0]) >= 26
        # The server answers on the native protocol with the driver's view of it too.
        assert client.connection.server_info.version_major >= 26
    finally:
        client.disconnect()


def test_topics_exist_with_partitions(services: Endpoints) -> None:
    from ingest.admin import partition_counts
    from ingest.kafka_settings import KafkaSettings

    counts = partition_counts(KafkaSettings(bootstrap=services.kafka_bootstrap))
    assert counts == {"scans.raw": 4, "scans.enriched": 4, "scans.dlq": 4, "premises": 4}


def _cli(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCANTRACE_KAFKA__") and not k.startswith("SCANTRACE_CLICKHOUSE__")
    }
    env["SCANTRACE_SERVICES__STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "scantrace.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_up_twice_status_and_down_leave_nothing(tmp_path: Path) -> None:
    """A second, independent set through the CLI: `up` is idempotent, `down` stops all."""
    first = _cli(tmp_path, "services", "up")
    assert first.returncode == 0, first.stderr
    try:
        status = json.loads(_cli(tmp_path, "services", "status", "--json").stdout)
        assert status["kafka_bootstrap"].startswith("127.0.0.1:")
        assert status["clickhouse_native"].startswith("clickhouse://127.0.0.1:")
        assert status["clickhouse_http"].startswith("http://127.0.0.1:")
        pids = [status["kafka"]["pid"], status["clickhouse"]["pid"]]
        assert all(alive(p) for p in pids)

        again = _cli(tmp_path, "services", "up")
        assert again.returncode == 0, again.stderr
        assert "nothing (already running)" in again.stdout
        assert (
            json.loads(_cli(tmp_path, "services", "status", "--json").stdout)["kafka"]["pid"]
            == pids[0]
        )
    finally:
        down = _cli(tmp_path, "services", "down")
    assert down.returncode == 0, down.stderr
    assert not any(alive(p) for p in pids)
    # No process anywhere still runs from this state folder.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path)], capture_output=True, text=True
    ).stdout
    assert leftovers.strip() == ""
    assert _cli(tmp_path, "services", "status").returncode == 1
