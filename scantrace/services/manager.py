"""`services up|status|down|env`: start the local Kafka and ClickHouse, provision them,
stop them, and tell each component how to reach them.

State (PIDs, ports, logs, and with `--secure` the Kafka users' passwords) lives in one
JSON file in the state folder (0600, the folder 0700), so the CLI, the tests and a
second shell all find the same set of services.
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
from ingest.kafka_probe import check_kafka
from ingest.kafka_settings import KafkaSettings
from processors.worker_settings import WorkerSettings
from scantrace.services import clickhouse_local, kafka_apache, kafka_noida, kafka_security
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
    settings.state_dir.chmod(0o700)
    tmp = state_path(settings).with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(state, indent=2))
    tmp.chmod(0o600)  # an older file may have been made with wider rights
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


def _kafka_ready(kafka: KafkaSettings) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        **kafka.kafka_python_config(), request_timeout_ms=3000, client_id="scantrace-probe"
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


def _start_kafka(settings: ServicesSettings, kind: str, secure: bool) -> dict[str, Any]:
    if secure and kind != "apache":
        raise ServiceError(
            f"--secure needs the local Apache Kafka (--kafka apache, Java 17+ and Maven), "
            f"not {kind}"
            + (
                ": for an external broker set SCANTRACE_KAFKA__SECURITY_PROTOCOL and the "
                "SASL/SSL settings instead"
                if kind == "external"
                else ""
            )
        )
    if kind == "external":
        bootstrap = os.environ.get("SCANTRACE_KAFKA__BOOTSTRAP", "")
        if not bootstrap:
            raise ServiceError("--kafka external needs SCANTRACE_KAFKA__BOOTSTRAP")
        return {"kind": "external", "bootstrap": bootstrap}
    if kind == "apache":
        record = kafka_apache.start(
            settings.state_dir, settings.cache_dir, SinkSettings().kafka.partitions, secure=secure
        )
        timeout = 120.0
    elif kind == "noida":
        record = kafka_noida.start(settings.state_dir)
        timeout = 30.0
    else:
        raise ServiceError(f"unknown Kafka kind {kind!r}")
    probe = admin_kafka(record)
    wait_until(
        lambda: _kafka_ready(probe),
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


# -- who logs in as whom ---------------------------------------------------------------

# The Kafka user of each command that `services env` and the CLI know; None: no Kafka.
# Publishing the premises registry (`premises import`; `demo` through `local_kafka`) is
# the admin's job. `demo` and `run` themselves take no user: their children take theirs.
KAFKA_USERS: dict[str, str | None] = {
    "gateway": "gateway",
    "worker": "worker",
    "sink": "sink",
    "admin": "admin",
    "premises": "admin",
    "tracer": None,
    "api": None,
    "trace": None,
    "trace-premises": None,
    "audit": None,
    "report": None,
}
# Commands that need ClickHouse (the rest talk to Kafka only).
CLICKHOUSE_USERS = frozenset(
    {"sink", "admin", "tracer", "api", "trace", "trace-premises", "audit", "report"}
)
_KAFKA_SECURITY_ENV = tuple(
    f"SCANTRACE_KAFKA__{name}"
    for name in ("SECURITY_PROTOCOL", "SASL_USERNAME", "SASL_PASSWORD", "SASL_PASSWORD_FILE")
)


def security_record(state: dict[str, Any]) -> dict[str, Any] | None:
    """The running local broker's security record (`kafka_security`), None without."""
    kafka = state.get("kafka") or {}
    record = kafka.get("security")
    return record if isinstance(record, dict) and _running(kafka) else None


def admin_kafka(record: dict[str, Any], base: KafkaSettings | None = None) -> KafkaSettings:
    """`base` (default: the environment's) pointed at the broker of `record`, logged in
    as the admin when that broker is secured."""
    base = base or SinkSettings().kafka
    security = record.get("security")
    if not security:
        return base.model_copy(update={"bootstrap": record["bootstrap"]})
    return kafka_security.user_settings(security, "admin", base, str(record["bootstrap"]))


def clickhouse_url_for(component: str, ends: Endpoints) -> str:
    """The ClickHouse URL a component uses: one URL for every component today; where
    each role gets a user of its own, this is the one place that chooses it."""
    del component
    return ends.clickhouse_url


def component_env(settings: ServicesSettings, component: str) -> dict[str, str]:
    """The SCANTRACE_... variables `component` needs to use the running services
    (`scantrace services env COMPONENT`)."""
    if component not in KAFKA_USERS:
        raise ServiceError(
            f"unknown component {component!r}: one of {', '.join(sorted(KAFKA_USERS))}"
        )
    state = load_state(settings)
    ends = endpoints(settings, state)
    if ends is None:
        raise ServiceError("the services are not running (scantrace services up)")
    env: dict[str, str] = {}
    user = KAFKA_USERS[component]
    if user is not None:
        env["SCANTRACE_KAFKA__BOOTSTRAP"] = ends.kafka_bootstrap
        security = security_record(state)
        if security is not None:
            env.update(kafka_security.env_lines(security, user))
    if component in CLICKHOUSE_USERS:
        env["SCANTRACE_CLICKHOUSE__URL"] = clickhouse_url_for(component, ends)
    return env


def component_settings(ends: Endpoints) -> tuple[KafkaSettings, ClickHouseSettings]:
    """The Kafka and ClickHouse settings every component reads from the environment
    (partitions, replication, retention, cluster, password...), pointed at `ends`."""
    env = SinkSettings()
    kafka = env.kafka.model_copy(update={"bootstrap": env.kafka.bootstrap or ends.kafka_bootstrap})
    clickhouse = env.clickhouse.model_copy(
        update={"url": env.clickhouse.url or ends.clickhouse_url}
    )
    return kafka, clickhouse


def provision(
    kafka: KafkaSettings, clickhouse: ClickHouseSettings, security: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """Topics with their partition counts, the ACLs of a secured broker, and the schema
    migrations as far as they exist. `kafka` is the admin's connection."""
    check_kafka(kafka)
    topics = ensure_topics(kafka)
    if security is not None:
        worker = WorkerSettings(kafka=kafka)
        kafka_security.apply_acls(
            kafka, kafka_security.acls(kafka, worker.app_id, SinkSettings().sink.group_id)
        )
    applied = migrate(clickhouse)
    return {
        "topics_created": topics,
        "migrations_applied": [f"{a.version}:{a.name}" for a in applied],
    }


def up(
    settings: ServicesSettings,
    kafka_kind: str | None = None,
    clickhouse_kind: str | None = None,
    *,
    secure: bool | None = None,
) -> dict[str, Any]:
    """Start whatever is not running yet; `up` twice starts nothing the second time.
    `secure` (default `settings.secure`): the Apache broker with TLS, users and ACLs."""
    state = load_state(settings)
    started: list[str] = []
    kind = resolve_kafka_kind(kafka_kind or settings.kafka)
    secure = settings.secure if secure is None else secure
    if secure and _running(state.get("kafka")) and not state["kafka"].get("security"):
        raise ServiceError(
            "Kafka is running without security: `scantrace services down` first, then "
            "`scantrace services up --secure` (with a fresh SCANTRACE_SERVICES__STATE_DIR)"
        )
    try:
        if not _running(state.get("kafka")):
            state["kafka"] = _start_kafka(settings, kind, secure)
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
    kafka, clickhouse = component_settings(ends)
    if state["kafka"].get("kind") != "external":
        kafka = admin_kafka(state["kafka"], kafka)
    report = provision(kafka, clickhouse, state["kafka"].get("security"))
    state["started_at"] = state.get("started_at") or time.time()
    _save_state(settings, state)
    return {"started": started, **report, **status(settings)}


def status(settings: ServicesSettings) -> dict[str, Any]:
    state = load_state(settings)
    ends = endpoints(settings, state)
    kafka = {k: v for k, v in (state.get("kafka") or {}).items() if k != "security"}
    security = security_record(state)
    out: dict[str, Any] = {
        "running": ends is not None,
        "state_dir": str(settings.state_dir),
        "kafka": {**kafka, "alive": _running(state.get("kafka"))} if kafka else None,
        "kafka_security": kafka_security.public(security) if security else None,
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


def _local_login(
    state: dict[str, Any], ends: Endpoints, component: str, bootstrap: str, configured: bool
) -> tuple[dict[str, Any], str] | None:
    """(security record, user) when `component` should log in to the secured local
    broker with its own user: it uses Kafka, talks to that broker, and its environment
    configures no security of its own."""
    security = security_record(state)
    user = KAFKA_USERS.get(component)
    if security is None or user is None or configured:
        return None
    if bootstrap not in ("", ends.kafka_bootstrap):
        return None
    return security, user


def local_kafka(
    component: str, base: KafkaSettings, settings: ServicesSettings | None = None
) -> KafkaSettings:
    """`base` logged in as `component`'s user of the secured local broker, when that is
    the broker `base` uses and `base` brings no credentials; else `base` unchanged."""
    settings = settings or ServicesSettings()
    state = load_state(settings)
    ends = endpoints(settings, state)
    if ends is None:
        return base
    login = _local_login(
        state, ends, component, base.bootstrap, base.security_protocol != "PLAINTEXT"
    )
    if login is None:
        return base
    return kafka_security.user_settings(*login, base, ends.kafka_bootstrap)


def apply_environment(
    settings: ServicesSettings | None = None, component: str | None = None
) -> Endpoints | None:
    """Point every component at the running local services, unless the environment
    already names a broker (SCANTRACE_KAFKA__BOOTSTRAP) or a ClickHouse URL. On a secured
    local broker `component` (a command name) logs in as its own user, unless the
    environment sets Kafka credentials itself."""
    settings = settings or ServicesSettings()
    state = load_state(settings)
    ends = endpoints(settings, state)
    if ends is None:
        return None
    os.environ.setdefault("SCANTRACE_KAFKA__BOOTSTRAP", ends.kafka_bootstrap)
    url = os.environ.setdefault(
        "SCANTRACE_CLICKHOUSE__URL", clickhouse_url_for(component or "", ends)
    )
    if url.startswith(ends.clickhouse_native):
        # The local person hash key goes with the local ClickHouse only.
        os.environ.setdefault(
            "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY", local_person_hash_key(settings)
        )
    login = _local_login(
        state,
        ends,
        component or "",
        os.environ["SCANTRACE_KAFKA__BOOTSTRAP"],
        any(os.environ.get(name) for name in _KAFKA_SECURITY_ENV),
    )
    if login is not None:
        os.environ.update(kafka_security.env_lines(*login))
    return ends
