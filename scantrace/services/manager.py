"""`services up|status|down`: start the local Kafka and ClickHouse, provision them, stop them.

State (PIDs, ports, logs) lives in one JSON file in the state folder, so the CLI, the
tests and a second shell all find the same set of services.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from ingest.admin import ensure_topics
from ingest.kafka_settings import KafkaSettings
from scantrace.services import clickhouse_local, kafka_apache, kafka_noida
from scantrace.services.process import ServiceError, alive, stop, wait_until
from scantrace.settings import ServicesSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.migrations import migrate
from sinks.settings import SinkSettings

STATE_FILE = "services.json"
# The local services' own person hash key (SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY), made
# once and kept beside the state, readable by its owner only.
PERSON_HASH_KEY_FILE = "person_hash_key"


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    clickhouse_native: str
    clickhouse_http: str
    # The full URL components use: an external one is kept as given (user, password, db).
    clickhouse_url: str


def state_path(settings: ServicesSettings) -> Path:
    return settings.state_dir / STATE_FILE


def load_state(settings: ServicesSettings) -> dict[str, Any]:
    try:
        data = json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(settings: ServicesSettings, state: dict[str, Any]) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path(settings))


def _running(record: dict[str, Any] | None) -> bool:
    if not record:
        return False
    pid = record.get("pid")
    return pid is None or alive(int(pid))  # external services have no pid


def resolve_kafka_kind(requested: str) -> str:
    if requested != "auto":
        return requested
    return "apache" if kafka_apache.available() else "noida"


def _kafka_ready(bootstrap: str) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=3000, client_id="scantrace-probe"
    )
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def _clickhouse_ready(port: int) -> bool:
    # The driver logs every refused connection; while polling that is just noise.
    logging.getLogger("clickhouse_driver.connection").setLevel(logging.CRITICAL)
    client = Client(host="127.0.0.1", port=port, connect_timeout=2)
    try:
        client.execute("SELECT 1")
        return True
    finally:
        client.disconnect()


def _start_kafka(settings: ServicesSettings, kind: str) -> dict[str, Any]:
    if kind == "external":
        bootstrap = os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP", "")
        if not bootstrap:
            raise ServiceError("--kafka external needs SCANTRACE_KAFKA__BOOTSTRAP")
        return {"kind": "external", "bootstrap": bootstrap}
    if kind == "apache":
        record = kafka_apache.start(
            settings.state_dir, settings.cache_dir, SinkSettings().kafka.partitions
        )
        timeout = 120.0
    elif kind == "noida":
        record = kafka_noida.start(settings.state_dir)
        timeout = 30.0
    else:
        raise ServiceError(f"unknown Kafka kind {kind!r}")
    wait_until(
        lambda: _kafka_ready(str(record["bootstrap"])),
        pid=int(record["pid"]),  # type: ignore[call-overload]
        log=Path(str(record["log"])),
        what=f"Kafka ({kind})",
        timeout=timeout,
    )
    return record


def _start_clickhouse(settings: ServicesSettings, kind: str) -> dict[str, Any]:
    if kind == "external":
        url = os.environ.get("SCANTRACE_CLICKHOUSE__URL", "")
        if not url:
            raise ServiceError("--clickhouse external needs SCANTRACE_CLICKHOUSE__URL")
        return {"kind": "external", "url": url}
    record = clickhouse_local.start(settings.state_dir)
    wait_until(
        lambda: _clickhouse_ready(int(record["native_port"])),  # type: ignore[call-overload]
        pid=int(record["pid"]),  # type: ignore[call-overload]
        log=Path(str(record["log"])),
        what="ClickHouse (local)",
        timeout=60.0,
    )
    return record


def endpoints(settings: ServicesSettings, state: dict[str, Any] | None = None) -> Endpoints | None:
    state = state if state is not None else load_state(settings)
    kafka, ch = state.get("kafka"), state.get("clickhouse")
    if not (_running(kafka) and _running(ch)):
        return None
    assert kafka is not None and ch is not None
    if ch["kind"] == "external":
        host, port, _, _, _ = ClickHouseSettings(url=ch["url"]).parts()
        return Endpoints(kafka["bootstrap"], f"clickhouse://{host}:{port}", "", ch["url"])
    native = f"clickhouse://127.0.0.1:{ch['native_port']}"
    database = state.get("database", settings.database)
    return Endpoints(
        kafka["bootstrap"], native, f"http://127.0.0.1:{ch['http_port']}", f"{native}/{database}"
    )


def component_settings(ends: Endpoints) -> tuple[KafkaSettings, ClickHouseSettings]:
    """The Kafka and ClickHouse settings every component reads from the environment
    (partitions, replication, retention, cluster, password...), pointed at `ends`."""
    env = SinkSettings()
    kafka = env.kafka.model_copy(update={"bootstrap": env.kafka.bootstrap or ends.kafka_bootstrap})
    clickhouse = env.clickhouse.model_copy(
        update={"url": env.clickhouse.url or ends.clickhouse_url}
    )
    return kafka, clickhouse


def provision(kafka: KafkaSettings, clickhouse: ClickHouseSettings) -> dict[str, list[str]]:
    """Topics with their partition counts, and the schema migrations as far as they exist."""
    topics = ensure_topics(kafka)
    applied = migrate(clickhouse)
    return {
        "topics_created": topics,
        "migrations_applied": [f"{a.version}:{a.name}" for a in applied],
    }


def up(
    settings: ServicesSettings, kafka_kind: str | None = None, clickhouse_kind: str | None = None
) -> dict[str, Any]:
    """Start whatever is not running yet; `up` twice starts nothing the second time."""
    state = load_state(settings)
    started: list[str] = []
    kind = resolve_kafka_kind(kafka_kind or settings.kafka)
    try:
        if not _running(state.get("kafka")):
            state["kafka"] = _start_kafka(settings, kind)
            started.append("kafka")
            _save_state(settings, state)
        if not _running(state.get("clickhouse")):
            state["clickhouse"] = _start_clickhouse(
                settings, clickhouse_kind or settings.clickhouse
            )
            started.append("clickhouse")
            state["database"] = settings.database
            _save_state(settings, state)
    except ServiceError:
        down(settings)  # nothing half-started is left behind
        raise
    ends = endpoints(settings, state)
    assert ends is not None
    report = provision(*component_settings(ends))
    state["started_at"] = state.get("started_at") or time.time()
    _save_state(settings, state)
    return {"started": started, **report, **status(settings)}


def status(settings: ServicesSettings) -> dict[str, Any]:
    state = load_state(settings)
    ends = endpoints(settings, state)
    out: dict[str, Any] = {
        "running": ends is not None,
        "state_dir": str(settings.state_dir),
        "kafka": {**state.get("kafka", {}), "alive": _running(state.get("kafka"))}
        if state.get("kafka")
        else None,
        "clickhouse": {**state.get("clickhouse", {}), "alive": _running(state.get("clickhouse"))}
        if state.get("clickhouse")
        else None,
    }
    if ends:
        out.update(
            kafka_bootstrap=ends.kafka_bootstrap,
            clickhouse_native=ends.clickhouse_native,
            clickhouse_http=ends.clickhouse_http,
            clickhouse_url=ends.clickhouse_url,
        )
    return out


def down(settings: ServicesSettings) -> list[str]:
    """Stop every process `up` started, by PID; returns what was stopped."""
    state = load_state(settings)
    stopped: list[str] = []
    for name in ("kafka", "clickhouse"):
        record = state.get(name) or {}
        pid = record.get("pid")
        if pid is not None:
            if alive(int(pid)):
                stopped.append(name)
            stop(int(pid), str(record.get("marker", "")))
        state.pop(name, None)
    state.pop("started_at", None)
    if settings.state_dir.exists():
        _save_state(settings, state)
    return stopped


def local_person_hash_key(settings: ServicesSettings) -> str:
    """The local services' person hash key, made at the first call."""
    path = settings.state_dir / PERSON_HASH_KEY_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return key


def apply_environment(settings: ServicesSettings | None = None) -> Endpoints | None:
    """Point every component at the running local services, unless the environment
    already names a broker (SCANTRACE_KAFKA__BOOTSTRAP) or a ClickHouse URL. The local
    person hash key goes with the local ClickHouse only."""
    settings = settings or ServicesSettings()
    ends = endpoints(settings)
    if ends is not None:
        os.environ.setdefault("SCANTRACE_KAFKA__BOOTSTRAP", ends.kafka_bootstrap)
        url = os.environ.setdefault("SCANTRACE_CLICKHOUSE__URL", ends.clickhouse_url)
        if url.startswith(ends.clickhouse_native):
            key = local_person_hash_key(settings)
            os.environ.setdefault("SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY", key)
    return ends
