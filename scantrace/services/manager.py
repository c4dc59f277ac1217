"""`services up|status|down|env`: start the local Kafka and ClickHouse, provision them,
stop them, and tell each component how to reach them.

One node of each by default; `--brokers N` makes Kafka a cluster of N KRaft nodes (one
quorum, topics replicated on three of them with `min.insync.replicas` 2) and
`--clickhouse-shards N` makes ClickHouse N servers of the cluster `LOCAL_CLUSTER`, with
the cluster schema (Distributed tables over each shard's `_local` tables) applied node by
node, without replicas (the chdb server has no ZooKeeper client). Components talk to the
first shard; `up` on a cluster with dead members starts those again, on their ports.

State (PIDs, ports, logs, the local ClickHouse users' passwords and with `--secure`
the Kafka users' passwords) lives in one JSON file in the state folder (0600, the
folder 0700), so the CLI, the tests and a second shell all find the same set of
services.

Each component reaches the local services as its own user: Kafka as its component's
(`KAFKA_USERS`, on a secured broker), ClickHouse as its role's (`COMPONENT_ROLES`,
`sinks.grants`); `component_env` names what a component gets, `apply_environment`
sets it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from ingest.admin import ensure_topics
from ingest.kafka_probe import check_kafka
from ingest.kafka_settings import KafkaSettings
from processors.worker_settings import WorkerSettings
from scantrace.services import clickhouse_local, kafka_apache, kafka_noida, kafka_security
from scantrace.services.clickhouse_local import new_users, write_private
from scantrace.services.process import ServiceError, alive, free_port, stop, wait_until
from scantrace.settings import ServicesSettings
from sinks.clickhouse_settings import ClickHouseSettings
from sinks.client import connect
from sinks.grants import ROLES
from sinks.migrations import migrate, migrate_nodes
from sinks.settings import SinkSettings

STATE_FILE = "services.json"
REPLICATION_ENV: Final = "SCANTRACE_KAFKA__REPLICATION_FACTOR"
# The ClickHouse cluster of `services up --clickhouse-shards N` (remote_servers).
LOCAL_CLUSTER: Final = "scantrace"
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
    write_private(state_path(settings), json.dumps(state, indent=2))  # it holds passwords


def _running(record: dict[str, Any] | None) -> bool:
    """The service answers: a single server is alive, a Kafka cluster has a live node,
    a ClickHouse cluster its first shard (the one components talk to)."""
    if not record:
        return False
    if "nodes" in record:
        return any(alive(int(n["pid"])) for n in record["nodes"])
    pid = record.get("pid")
    return pid is None or alive(int(pid))  # external services have no pid


def _members(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The processes of a service record: a cluster's nodes or shards, else itself."""
    if not record:
        return []
    if "nodes" in record:
        return list(record["nodes"])
    if "shards" in record:
        return list(record["shards"])
    return [record] if record.get("pid") is not None else []


def resolve_kafka_kind(requested: str) -> str:
    if requested != "auto":
        return requested
    return "apache" if kafka_apache.available() else "noida"


def _kafka_ready(kafka: KafkaSettings, nodes: int = 1) -> bool:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        **kafka.kafka_python_config(), request_timeout_ms=3000, client_id="scantrace-probe"
    )
    try:
        admin.list_topics()
        # A cluster is ready when every node has registered as a broker.
        return nodes == 1 or len(admin.describe_cluster()["brokers"]) >= nodes
    finally:
        admin.close()


def _clickhouse_ready(port: int) -> bool:
    # The driver logs every refused connection; while polling that is just noise.
    logging.getLogger("clickhouse_driver.connection").setLevel(logging.CRITICAL)
    probe = ClickHouseSettings(url=f"clickhouse://127.0.0.1:{port}/default")
    client = connect(probe, connect_timeout=2)
    try:
        client.execute("SELECT 1")
        return True
    finally:
        client.disconnect()


def _start_kafka(
    settings: ServicesSettings, kind: str, secure: bool, brokers: int = 1
) -> dict[str, Any]:
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
    if brokers > 1:
        if kind != "apache":
            raise ServiceError(f"--brokers {brokers} needs the local Apache Kafka, not {kind}")
        return _start_kafka_cluster(settings, brokers, secure)
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


def _wait_kafka_cluster(record: dict[str, Any], what: str) -> None:
    nodes = record["nodes"]
    probe = admin_kafka(record)
    deadline = time.monotonic() + 240.0  # three JVMs and a quorum on a busy machine
    for node in nodes:
        wait_until(
            lambda: _kafka_ready(probe, len(nodes)),
            pid=int(node["pid"]),
            log=Path(str(node["log"])),
            what=f"{what} node {node['id']}",
            timeout=max(1.0, deadline - time.monotonic()),
        )


def _start_kafka_cluster(settings: ServicesSettings, brokers: int, secure: bool) -> dict[str, Any]:
    nodes = kafka_apache.start_cluster(
        settings.state_dir,
        settings.cache_dir,
        SinkSettings().kafka.partitions,
        brokers,
        secure=secure,
    )
    security = kafka_security.load(settings.state_dir / "kafka")
    record: dict[str, Any] = {
        "kind": "apache",
        "bootstrap": ",".join(n["bootstrap"] for n in nodes),
        "nodes": nodes,
        "replication_factor": min(3, brokers),
        **({"security": security} if security else {}),
    }
    try:
        _wait_kafka_cluster(record, "Kafka (apache cluster)")
    except ServiceError:
        for node in nodes:
            stop(int(node["pid"]), str(node["marker"]))
        raise
    return record


def _revive(settings: ServicesSettings, state: dict[str, Any]) -> list[str]:
    """Start again the dead members of a running cluster, on their own ports (the quorum
    and remote_servers know them by address); returns what was started."""
    started: list[str] = []
    kafka = state.get("kafka") or {}
    if "nodes" in kafka:
        dead = [n for n in kafka["nodes"] if not alive(int(n["pid"]))]
        for node in dead:
            fresh = kafka_apache.start_node(settings.state_dir, settings.cache_dir, int(node["id"]))
            node.update(fresh)
            started.append(f"kafka node {node['id']}")
        if dead:
            _save_state(settings, state)
            _wait_kafka_cluster(kafka, "Kafka (apache cluster)")
    ch = state.get("clickhouse") or {}
    if "shards" in ch:
        dead = [sh for sh in ch["shards"] if not alive(int(sh["pid"]))]
        for shard in dead:
            fresh = clickhouse_local.start(
                settings.state_dir,
                (int(shard["native_port"]), int(shard["http_port"])),
                name=f"clickhouse-{shard['shard']}",
            )  # its users.xml and remote_servers are the ones it had
            shard.update(fresh)
            started.append(f"clickhouse shard {shard['shard']}")
        if dead:
            front = ch["shards"][0]
            ch.update(pid=front["pid"], log=front["log"])
            _save_state(settings, state)
            _wait_shards(ch["shards"])
    return started


def _wait_shards(shards: list[dict[str, Any]]) -> None:
    for shard in shards:
        wait_until(
            lambda shard=shard: _clickhouse_ready(int(shard["native_port"])),  # type: ignore[misc]
            pid=int(shard["pid"]),
            log=Path(str(shard["log"])),
            what=f"ClickHouse shard {shard['shard']}",
            timeout=120.0,
        )


def _start_clickhouse_cluster(settings: ServicesSettings, shards: int) -> dict[str, Any]:
    """`shards` chdb servers, each a one-replica shard of `LOCAL_CLUSTER`, with the same
    users (the cluster grants) and inter-server secret."""
    users = new_users()
    secret = secrets.token_urlsafe(24)
    ports = [(free_port(), free_port()) for _ in range(shards)]
    config = clickhouse_local.remote_servers_xml(LOCAL_CLUSTER, [t for t, _ in ports], secret)
    records: list[dict[str, Any]] = []
    try:
        for i, (tcp, http) in enumerate(ports, start=1):
            name = f"clickhouse-{i}"
            write_private(settings.state_dir / name / "config.d" / "cluster.xml", config)
            record = clickhouse_local.start(
                settings.state_dir,
                (tcp, http),
                users=users,
                database=settings.database,
                cluster=LOCAL_CLUSTER,
                name=name,
            )
            records.append({"shard": i, **record})
        _wait_shards(records)
    except ServiceError:
        for started in records:
            stop(int(started["pid"]), str(started["marker"]))
        raise
    front = records[0]
    return {
        **{k: front[k] for k in ("kind", "pid", "native_port", "http_port", "log", "marker")},
        "users": users,
        "cluster": LOCAL_CLUSTER,
        "shards": records,
    }


def _start_clickhouse(settings: ServicesSettings, kind: str, shards: int = 1) -> dict[str, Any]:
    if kind == "external":
        url = os.environ.get("SCANTRACE_CLICKHOUSE__URL", "")
        if not url:
            raise ServiceError("--clickhouse external needs SCANTRACE_CLICKHOUSE__URL")
        return {"kind": "external", "url": url}
    if shards > 1:
        return _start_clickhouse_cluster(settings, shards)
    # Fresh passwords at every start: the server reads its users.xml only then.
    users = new_users()
    record = clickhouse_local.start(settings.state_dir, users=users, database=settings.database)
    record["users"] = users
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
    "topics": "admin",
    "tracer": None,
    "api": None,
    "trace": None,
    "trace-premises": None,
    "audit": None,
    "report": None,
}
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


def component_settings(
    ends: Endpoints, clickhouse_url: str = ""
) -> tuple[KafkaSettings, ClickHouseSettings]:
    """The Kafka and ClickHouse settings every component reads from the environment
    (partitions, replication, retention, cluster, password...), pointed at `ends` (at
    `clickhouse_url`, a role's, when given)."""
    env = SinkSettings()
    kafka = env.kafka.model_copy(update={"bootstrap": env.kafka.bootstrap or ends.kafka_bootstrap})
    clickhouse = env.clickhouse.model_copy(
        update={"url": env.clickhouse.url or clickhouse_url or ends.clickhouse_url}
    )
    return kafka, clickhouse


def provision(
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    security: dict[str, Any] | None = None,
    shards: list[ClickHouseSettings] | None = None,
) -> dict[str, list[str]]:
    """Topics with their partition counts, the ACLs of a secured broker, and the schema
    migrations as far as they exist. `kafka` is the admin's connection; `shards`, the
    migrator's connection to every node of a local ClickHouse cluster
    (`clickhouse.cluster`), migrated node by node."""
    check_kafka(kafka)
    topics = ensure_topics(kafka)
    if security is not None:
        worker = WorkerSettings(kafka=kafka)
        kafka_security.apply_acls(
            kafka, kafka_security.acls(kafka, worker.app_id, SinkSettings().sink.group_id)
        )
    applied = migrate_nodes(clickhouse, shards) if shards else migrate(clickhouse)
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
    brokers: int | None = None,
    clickhouse_shards: int | None = None,
) -> dict[str, Any]:
    """Start whatever is not running yet; `up` twice starts nothing the second time.
    `secure` (default `settings.secure`): the Apache broker with TLS, users and ACLs.
    `brokers`, `clickhouse_shards` (default: the running services' shape, else
    `settings`'): a local cluster; the dead members of a running one are started again."""
    state = load_state(settings)
    started: list[str] = []
    kind = resolve_kafka_kind(kafka_kind or settings.kafka)
    secure = settings.secure if secure is None else secure
    layout = kafka_apache.cluster_layout(settings.state_dir)
    brokers = (
        brokers
        or _size(state.get("kafka"), "nodes")
        or (len(layout["nodes"]) if layout else 0)  # a cluster formatted here, stopped
        or settings.brokers
    )
    clickhouse_shards = (
        clickhouse_shards or _size(state.get("clickhouse"), "shards") or settings.clickhouse_shards
    )
    for name, key, wanted in (
        ("kafka", "nodes", brokers),
        ("clickhouse", "shards", clickhouse_shards),
    ):
        have = _size(state.get(name), key) or 1
        if _running(state.get(name)) and have != wanted:
            raise ServiceError(
                f"{name} is running with {have} {'nodes' if name == 'kafka' else 'shards'}, "
                f"not {wanted}: `scantrace services down` first"
            )
    if secure and _running(state.get("kafka")) and not state["kafka"].get("security"):
        raise ServiceError(
            "Kafka is running without security: `scantrace services down` first, then "
            "`scantrace services up --secure` (with a fresh SCANTRACE_SERVICES__STATE_DIR)"
        )
    try:
        started += _revive(settings, state)
        if not _running(state.get("kafka")):
            state["kafka"] = _start_kafka(settings, kind, secure, brokers)
            started.append("kafka")
            _save_state(settings, state)
        if not _running(state.get("clickhouse")):
            state["clickhouse"] = _start_clickhouse(
                settings, clickhouse_kind or settings.clickhouse, clickhouse_shards
            )
            started.append("clickhouse")
            state["database"] = settings.database
            _save_state(settings, state)
    except ServiceError:
        down(settings)  # nothing half-started is left behind
        raise
    ends = endpoints(settings, state)
    assert ends is not None
    kafka, clickhouse = component_settings(ends, clickhouse_url_for(state, "migrator"))
    if state["kafka"].get("kind") != "external":
        kafka = admin_kafka(state["kafka"], kafka)
    replication = replication_factor(state)
    if replication and REPLICATION_ENV not in os.environ:
        kafka = kafka.model_copy(update={"replication_factor": replication})
    shards = None
    if "shards" in state["clickhouse"]:
        clickhouse = clickhouse.model_copy(update={"cluster": state["clickhouse"]["cluster"]})
        shards = [ClickHouseSettings(url=url) for url in shard_urls(state, clickhouse.url)]
    report = provision(kafka, clickhouse, state["kafka"].get("security"), shards)
    state["started_at"] = state.get("started_at") or time.time()
    _save_state(settings, state)
    return {"started": started, **report, **status(settings)}


def _size(record: dict[str, Any] | None, key: str) -> int:
    """The number of nodes or shards of a cluster record; 0 for anything else."""
    return len(record[key]) if record and key in record else 0


def replication_factor(state: dict[str, Any]) -> int:
    """The replication factor of the topics on the local Kafka cluster; 0 on one node."""
    kafka = state.get("kafka") or {}
    return int(kafka.get("replication_factor", 0)) if _running(kafka) else 0


def shard_urls(state: dict[str, Any], front_url: str) -> list[str]:
    """`front_url` (a role's URL on the first shard) for every shard of the local cluster,
    in shard order: the same user and database, each shard's port."""
    from urllib.parse import urlsplit, urlunsplit

    ch = state.get("clickhouse") or {}
    front = urlsplit(front_url)
    out = []
    for shard in ch.get("shards", []):
        netloc = front.netloc.rsplit(":", 1)[0] + f":{shard['native_port']}"
        out.append(urlunsplit((front.scheme, netloc, front.path, front.query, front.fragment)))
    return out


def _nodes_status(state: dict[str, Any]) -> list[dict[str, Any]]:
    kafka = state.get("kafka") or {}
    if "nodes" in kafka:
        return [
            {
                "id": n["id"],
                "pid": n["pid"],
                "bootstrap": n["bootstrap"],
                "alive": alive(int(n["pid"])),
            }
            for n in kafka["nodes"]
        ]
    if kafka.get("pid") is None:
        return []
    return [
        {"id": 1, "pid": kafka["pid"], "bootstrap": kafka["bootstrap"], "alive": _running(kafka)}
    ]


def _shards_status(state: dict[str, Any]) -> list[dict[str, Any]]:
    ch = state.get("clickhouse") or {}
    shards = ch.get("shards") or ([{"shard": 1, **ch}] if ch.get("pid") is not None else [])
    return [
        {
            "shard": sh["shard"],
            "pid": sh["pid"],
            "native": f"clickhouse://127.0.0.1:{sh['native_port']}",
            "alive": alive(int(sh["pid"])),
        }
        for sh in shards
    ]


def status(settings: ServicesSettings) -> dict[str, Any]:
    state = load_state(settings)
    ends = endpoints(settings, state)
    kafka = {k: v for k, v in (state.get("kafka") or {}).items() if k not in ("security", "nodes")}
    security = security_record(state)
    out: dict[str, Any] = {
        "running": ends is not None,
        "state_dir": str(settings.state_dir),
        "kafka": {**kafka, "alive": _running(state.get("kafka"))} if kafka else None,
        "kafka_security": kafka_security.public(security) if security else None,
        "clickhouse": {
            **{
                k: v for k, v in state.get("clickhouse", {}).items() if k not in ("users", "shards")
            },
            "alive": _running(state.get("clickhouse")),
        }
        if state.get("clickhouse")
        else None,
        "kafka_nodes": _nodes_status(state),
        "clickhouse_shards": _shards_status(state),
    }
    if ends:
        out.update(
            kafka_bootstrap=ends.kafka_bootstrap,
            clickhouse_native=ends.clickhouse_native,
            clickhouse_http=ends.clickhouse_http,
            clickhouse_url=ends.clickhouse_url,
        )
        users = clickhouse_users(state)
        if users:
            out["clickhouse_users"] = users
    return out


def down(settings: ServicesSettings) -> list[str]:
    """Stop every process `up` started, by PID; returns what was stopped."""
    state = load_state(settings)
    stopped: list[str] = []
    for name in ("kafka", "clickhouse"):
        members = _members(state.get(name))
        if any(alive(int(m["pid"])) for m in members):
            stopped.append(name)
        for member in members:
            stop(int(member["pid"]), str(member.get("marker", "")))
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


# The ClickHouse URLs a command gets from the local services: {command: {variable: role}}.
# `api` and `audit` read the audit log on a connection of their own (role auditor); their
# tracer connection writes the audit rows. Commands not named here get no ClickHouse URL.
CLICKHOUSE_URL: Final = "SCANTRACE_CLICKHOUSE__URL"
AUDIT_CLICKHOUSE_URL: Final = "SCANTRACE_AUDIT_CLICKHOUSE__URL"
_TRACER_AND_AUDITOR: Final = {CLICKHOUSE_URL: "tracer", AUDIT_CLICKHOUSE_URL: "auditor"}
COMPONENT_ROLES: Final[dict[str, dict[str, str]]] = {
    "sink": {CLICKHOUSE_URL: "sink"},
    "trace": {CLICKHOUSE_URL: "tracer"},
    "trace-premises": {CLICKHOUSE_URL: "tracer"},
    "api": _TRACER_AND_AUDITOR,
    "tracer": _TRACER_AND_AUDITOR,
    "audit": _TRACER_AND_AUDITOR,
    "report": {CLICKHOUSE_URL: "report"},
    "db": {CLICKHOUSE_URL: "migrator"},
    "migrator": {CLICKHOUSE_URL: "migrator"},
    # The demo counts what reached `scans` (the tracer may read it) and starts the rest.
    "demo": {CLICKHOUSE_URL: "tracer"},
}


def _state_of(settings_or_state: ServicesSettings | dict[str, Any]) -> dict[str, Any]:
    if isinstance(settings_or_state, ServicesSettings):
        return load_state(settings_or_state)
    return settings_or_state


def clickhouse_users(
    settings_or_state: ServicesSettings | dict[str, Any],
) -> dict[str, dict[str, str]]:
    """`{role: {"username", "password", "url"}}` of the running local ClickHouse; empty
    when it is external, not running, or was started without users."""
    state = _state_of(settings_or_state)
    ch = state.get("clickhouse") or {}
    users = ch.get("users") or {}
    if ch.get("kind") != "local" or not users or not _running(ch):
        return {}
    database = state.get("database", "scantrace")
    out: dict[str, dict[str, str]] = {}
    for role, user in users.items():
        auth = f"{quote(user['username'], safe='')}:{quote(user['password'], safe='')}"
        url = f"clickhouse://{auth}@127.0.0.1:{ch['native_port']}/{database}"
        out[role] = {"username": user["username"], "password": user["password"], "url": url}
    return out


def clickhouse_url_for(settings_or_state: ServicesSettings | dict[str, Any], role: str) -> str:
    """The URL a component of `role` (`sinks.grants.ROLES`) uses on the running services:
    its own user's on the local ClickHouse; the one URL given for an external ClickHouse
    (its users are the operator's); the admin URL of a local server without users."""
    if role not in ROLES:
        raise ValueError(f"unknown ClickHouse role {role!r}; roles: {', '.join(ROLES)}")
    state = _state_of(settings_or_state)
    users = clickhouse_users(state)
    if role in users:
        return users[role]["url"]
    ch = state.get("clickhouse")
    if not _running(ch):
        raise ServiceError("ClickHouse is not running: scantrace services up")
    assert ch is not None
    if ch["kind"] == "external":
        return str(ch["url"])
    return f"clickhouse://127.0.0.1:{ch['native_port']}/{state.get('database', 'scantrace')}"


def clickhouse_environment(
    settings_or_state: ServicesSettings | dict[str, Any], component: str
) -> dict[str, str]:
    """`{variable: url}` for a command (`COMPONENT_ROLES`): what it needs to reach the
    running ClickHouse as its role's user; empty for a command that needs none."""
    state = _state_of(settings_or_state)
    return {
        var: clickhouse_url_for(state, role)
        for var, role in COMPONENT_ROLES.get(component, {}).items()
    }


# Every component `services env` knows: Kafka users and ClickHouse roles.
ENV_COMPONENTS: Final = tuple(sorted(set(KAFKA_USERS) | set(COMPONENT_ROLES)))
# Who gets the key of the keyed person hashes: their only writer, the sink.
PERSON_HASH_KEY: Final = "SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY"
PERSON_HASH_KEY_COMPONENTS: Final = frozenset({"sink"})


def component_env(settings: ServicesSettings, component: str) -> dict[str, str]:
    """The SCANTRACE_... variables `component` needs to use the running services
    (`scantrace services env COMPONENT`)."""
    if component not in ENV_COMPONENTS:
        raise ServiceError(f"unknown component {component!r}: one of {', '.join(ENV_COMPONENTS)}")
    state = load_state(settings)
    ends = endpoints(settings, state)
    if ends is None:
        raise ServiceError("the services are not running (scantrace services up)")
    env: dict[str, str] = {}
    user = KAFKA_USERS.get(component)
    if user is not None:
        env["SCANTRACE_KAFKA__BOOTSTRAP"] = ends.kafka_bootstrap
        if replication_factor(state):
            env[REPLICATION_ENV] = str(replication_factor(state))
        security = security_record(state)
        if security is not None:
            env.update(kafka_security.env_lines(security, user))
    env.update(clickhouse_environment(state, component))
    if component in PERSON_HASH_KEY_COMPONENTS:
        env[PERSON_HASH_KEY] = local_person_hash_key(settings)
    return env


def apply_environment(
    settings: ServicesSettings | None = None, component: str | None = None
) -> Endpoints | None:
    """Point a command at the running local services, unless the environment already names
    a broker (SCANTRACE_KAFKA__BOOTSTRAP) or a ClickHouse URL. `component` (a command
    name) logs in to a secured local broker as its own user, unless the environment sets
    Kafka credentials itself, and picks its role's ClickHouse URLs (`COMPONENT_ROLES`);
    without it, the admin URL.

    A URL that is one of these services' role URLs was set by another command (a parent
    such as `scantrace run` or `demo`, or `services env`): it is replaced by this
    command's own, so every child of `run` connects as its role."""
    settings = settings or ServicesSettings()
    state = load_state(settings)
    ends = endpoints(settings, state)
    if ends is None:
        return None
    os.environ.setdefault("SCANTRACE_KAFKA__BOOTSTRAP", ends.kafka_bootstrap)
    if (
        replication_factor(state)
        and os.environ["SCANTRACE_KAFKA__BOOTSTRAP"] == ends.kafka_bootstrap
    ):
        # Faust makes its own topics (changelogs) with the components' replication factor.
        os.environ.setdefault(REPLICATION_ENV, str(replication_factor(state)))
    login = _local_login(
        state,
        ends,
        component or "",
        os.environ["SCANTRACE_KAFKA__BOOTSTRAP"],
        any(os.environ.get(name) for name in _KAFKA_SECURITY_ENV),
    )
    if login is not None:
        os.environ.update(kafka_security.env_lines(*login))
    if component is None:
        os.environ.setdefault(CLICKHOUSE_URL, ends.clickhouse_url)
        return ends
    ours = {u["url"] for u in clickhouse_users(state).values()}
    current = os.environ.get(CLICKHOUSE_URL)
    if current and current not in ours:
        return ends  # the user's own ClickHouse (and its users): leave every URL alone
    for var, url in clickhouse_environment(state, component).items():
        if os.environ.get(var, "") in ours | {""}:
            os.environ[var] = url
    if component in PERSON_HASH_KEY_COMPONENTS:
        # The key of the keyed person hashes goes to their writer on the local ClickHouse.
        os.environ.setdefault(PERSON_HASH_KEY, local_person_hash_key(settings))
    return ends
