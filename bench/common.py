"""What the benchmarks share: where the running services are, synthetic premises, CPU time
of a process, quantiles, and cleanup of a run's topics."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from ingest.kafka_settings import KafkaSettings
from ingest.premises import CATEGORIES, Premises
from sinks.clickhouse_settings import ClickHouseSettings

# The person hash key of the benchmarks' sinks (their databases are dropped afterwards).
BENCH_PERSON_HASH_KEY = "bench-person-hash-key-not-secret"


def services_status() -> dict[str, object]:
    """`scantrace services status --json`; exits with a hint when nothing runs."""
    out = subprocess.run(
        [sys.executable, "-m", "scantrace.cli", "services", "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    status: dict[str, object] = json.loads(out.stdout or "{}")
    if not status.get("running"):
        sys.exit(
            "no services: run `scantrace services up --kafka apache` or set the "
            "SCANTRACE_KAFKA__BOOTSTRAP (and SCANTRACE_CLICKHOUSE__URL) environment"
        )
    return status


def kafka_bootstrap() -> str:
    return os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP") or str(services_status()["kafka_bootstrap"])


def endpoints() -> tuple[str, str]:
    """(Kafka bootstrap, ClickHouse native URL without database)."""
    kafka = os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP")
    ch = os.environ.get("SCANTRACE_CLICKHOUSE__URL")
    if kafka and ch:
        host, port, _, _, _ = ClickHouseSettings(url=ch).parts()
        return kafka, f"clickhouse://{host}:{port}"
    status = services_status()
    return str(status["kafka_bootstrap"]), str(status["clickhouse_native"])


def make_premises(n: int, rng: random.Random) -> list[Premises]:
    """`n` premises NT-000000.. with random categories (districts, wards, agencies cycle)."""
    categories = sorted(CATEGORIES)
    return [
        Premises(
            premises_id=f"NT-{i:06d}",
            name=f"Premises {i}",
            category=rng.choice(categories),
            district=f"District {i % 7}",
            ward=f"Ward {i % 47}",
            agency=f"Agency {i % 31}",
            version=1,
        )
        for i in range(n)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    """The q-quantile, linearly interpolated between the closest ranks."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def delete_topics(kafka: KafkaSettings) -> None:
    """Every topic of the run's prefix (Faust's changelogs too); a benchmark leaves topics
    behind rather than crash."""
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(**kafka.kafka_python_config())
        try:
            names = [t for t in admin.list_topics() if t.startswith(kafka.topic_prefix)]
            if names:
                admin.delete_topics(names)
        finally:
            admin.close()
    except Exception as exc:  # cleanup only
        print(f"  (topics not deleted: {exc})")
