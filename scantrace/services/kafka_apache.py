"""Apache Kafka 4.4.0, KRaft, on 127.0.0.1: one combined broker+controller (`start`), or
a cluster of such nodes whose controllers form one quorum (`start_cluster`).

The jars come from Maven Central through `mvn` into a cache outside the repository and
are reused on the next start.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

from scantrace.services import kafka_security
from scantrace.services.process import ServiceError, free_port, spawn

KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.24.3"
MAIN_CLASS = "kafka.Kafka"

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>scantrace</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
"""


def java_major() -> int | None:
    java = shutil.which("java")
    if not java:
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def available() -> bool:
    """Java 17+ and Maven: what the real broker needs."""
    major = java_major()
    return major is not None and major >= 17 and shutil.which("mvn") is not None


def ensure_jars(cache_dir: Path) -> Path:
    """The folder of every runtime jar, fetched once with Maven and then reused."""
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    lib = home / "lib"
    done = home / ".complete"
    if done.exists():
        return lib
    if not available():
        raise ServiceError("Apache Kafka needs Java 17+ and Maven (mvn) on PATH")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM)
    shutil.rmtree(lib, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(home / "pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ServiceError(f"mvn could not fetch Kafka {KAFKA_VERSION} jars:\n{tail}")
    done.write_text(KAFKA_VERSION)
    return lib


def _properties(
    port: int,
    cport: int,
    data: Path,
    partitions: int,
    security: dict[str, Any] | None,
    *,
    node_id: int = 1,
    quorum: str = "",
    nodes: int = 1,
) -> str:
    """server.properties of node `node_id`; `quorum` (host:port of every controller) and
    `nodes` for a node of a cluster, whose internal topics are replicated on every node
    (at most three) and need all but one in sync."""
    listeners = (
        kafka_security.properties(security, port, cport)
        if security
        else [
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    )
    replicas = min(nodes, 3)
    min_isr = max(1, replicas - 1)
    return "\n".join(
        [
            "process.roles=broker,controller",
            f"node.id={node_id}",
            f"controller.quorum.bootstrap.servers={quorum or f'127.0.0.1:{cport}'}",
            *listeners,
            "controller.listener.names=CONTROLLER",
            f"log.dirs={data}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=8",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            "transaction.state.log.num.partitions=8",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            *(
                # Topics made without an explicit count (Faust's own) are replicated too.
                [f"default.replication.factor={replicas}", f"min.insync.replicas={min_isr}"]
                if nodes > 1
                else []
            ),
            "group.initial.rebalance.delay.ms=0",
            f"num.partitions={partitions}",
            "log.segment.bytes=67108864",
            "",
        ]
    )


def start(
    state_dir: Path, cache_dir: Path, partitions: int, *, secure: bool = False
) -> dict[str, object]:
    """Format (first start only) and start the broker; returns its state record.

    `secure` (`kafka_security`) is decided at the first start: a broker formatted with
    security restarts with it, and one formatted without cannot be secured later (its
    data would have no users)."""
    if cluster_layout(state_dir) is not None:
        raise ServiceError(
            f"the local Kafka in {state_dir / 'kafka'} was formatted as a cluster: start it "
            "with --brokers (or use another SCANTRACE_SERVICES__STATE_DIR)"
        )
    lib = ensure_jars(cache_dir)
    home = state_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    java = shutil.which("java") or "java"
    classpath = f"{lib}/*"
    ports_file = home / "ports"
    props = home / "server.properties"
    if (data / "meta.properties").exists() and ports_file.exists():
        # The standalone controller's own address is stored in its metadata log at
        # format time, so a restart keeps the first ports.
        port, cport = (int(x) for x in ports_file.read_text().split())
        security = kafka_security.load(home)
        if secure and security is None:
            raise ServiceError(
                f"the local Kafka in {home} was formatted without security; to start it "
                f"secured, remove that folder (its topics are lost) or use another "
                f"SCANTRACE_SERVICES__STATE_DIR"
            )
    else:
        port, cport = free_port(), free_port()
        security = kafka_security.create(home) if secure else None
        if security is None:
            shutil.rmtree(kafka_security.folder(home), ignore_errors=True)
        props.write_text(_properties(port, cport, data, partitions, security))
        props.chmod(0o600)  # holds the broker's own password when secured
        cluster_id = (
            subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        fmt = subprocess.run(
            [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *(kafka_security.format_args(security) if security else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            # stdout lists the bootstrap records, SCRAM salts and keys among them
            raise ServiceError(f"Kafka storage format failed:\n{fmt.stderr}")
        ports_file.write_text(f"{port} {cport}")
    log = state_dir / "logs" / "kafka.log"
    pid = _spawn(java, classpath, home, props, log)
    return {
        "kind": "apache",
        "pid": pid,
        "bootstrap": f"127.0.0.1:{port}",
        "log": str(log),
        "marker": str(props),
        **({"security": security} if security else {}),
    }


def _spawn(java: str, classpath: str, home: Path, props: Path, log: Path) -> int:
    (home / "log4j2.properties").write_text(_LOG4J2)
    return spawn(
        [
            java,
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
            "-cp",
            classpath,
            MAIN_CLASS,
            str(props),
        ],
        log,
    )


# -- a cluster of combined nodes ---------------------------------------------------------

CLUSTER_LAYOUT = "cluster.json"


def _kafka_uuid() -> str:
    """A Kafka `Uuid` as `StorageTool random-uuid` prints it: 16 random bytes, URL-safe
    base64 without padding; Kafka refuses one that starts with '-'."""
    while True:
        text = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def cluster_layout(state_dir: Path) -> dict[str, Any] | None:
    """The formatted cluster in `state_dir` (cluster id, each node's id, ports and
    metadata directory id), None when there is none."""
    try:
        data = json.loads((state_dir / "kafka" / CLUSTER_LAYOUT).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def formatted_single(state_dir: Path) -> bool:
    """A single node (`start`) was formatted in `state_dir`."""
    return (state_dir / "kafka" / "data" / "meta.properties").exists()


def _node_home(state_dir: Path, node_id: int) -> Path:
    return state_dir / "kafka" / f"node{node_id}"


def start_cluster(
    state_dir: Path, cache_dir: Path, partitions: int, nodes: int, *, secure: bool = False
) -> list[dict[str, Any]]:
    """Format (first start only) and start `nodes` combined broker+controller nodes whose
    controllers form one dynamic quorum (KIP-853): every node is formatted with the same
    `--initial-controllers` list and finds the others through
    `controller.quorum.bootstrap.servers`. Returns one record per node (`start_node`).

    The shape and the security are decided at the first start, as for one node."""
    root = state_dir / "kafka"
    if formatted_single(state_dir):
        raise ServiceError(
            f"the local Kafka in {root} was formatted as a single node; for a cluster use "
            "another SCANTRACE_SERVICES__STATE_DIR (or remove that folder: its topics are lost)"
        )
    layout = cluster_layout(state_dir)
    if layout is not None:
        if len(layout["nodes"]) != nodes:
            raise ServiceError(
                f"the local Kafka in {root} was formatted with {len(layout['nodes'])} nodes, "
                f"not {nodes}: use that count or another SCANTRACE_SERVICES__STATE_DIR"
            )
        if secure and kafka_security.load(root) is None:
            raise ServiceError(
                f"the local Kafka in {root} was formatted without security; to start it "
                "secured, use another SCANTRACE_SERVICES__STATE_DIR"
            )
    else:
        layout = _format_cluster(state_dir, cache_dir, partitions, nodes, secure)
    return [start_node(state_dir, cache_dir, int(n["id"])) for n in layout["nodes"]]


def _format_cluster(
    state_dir: Path, cache_dir: Path, partitions: int, nodes: int, secure: bool
) -> dict[str, Any]:
    lib = ensure_jars(cache_dir)
    root = state_dir / "kafka"
    root.mkdir(parents=True, exist_ok=True)
    java = shutil.which("java") or "java"
    security = kafka_security.create(root) if secure else None
    if security is None:
        shutil.rmtree(kafka_security.folder(root), ignore_errors=True)
    members: list[dict[str, Any]] = [
        {"id": i, "port": free_port(), "cport": free_port(), "dir_id": _kafka_uuid()}
        for i in range(1, nodes + 1)
    ]
    quorum = ",".join(f"127.0.0.1:{m['cport']}" for m in members)
    initial = ",".join(f"{m['id']}@127.0.0.1:{m['cport']}:{m['dir_id']}" for m in members)
    cluster_id = _kafka_uuid()
    formats: list[tuple[int, subprocess.Popen[str]]] = []
    for m in members:
        home = _node_home(state_dir, int(m["id"]))
        shutil.rmtree(home, ignore_errors=True)  # a format that stopped half-way
        home.mkdir(parents=True)
        props = home / "server.properties"
        props.write_text(
            _properties(
                int(m["port"]),
                int(m["cport"]),
                home / "data",
                partitions,
                security,
                node_id=int(m["id"]),
                quorum=quorum,
                nodes=nodes,
            )
        )
        props.chmod(0o600)
        argv = [
            java,
            "-cp",
            f"{lib}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
            "--initial-controllers",
            initial,
            *(kafka_security.format_args(security) if security else []),
        ]
        # The nodes are formatted side by side: each is a JVM start of a few seconds.
        formats.append(
            (
                int(m["id"]),
                subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                ),
            )
        )
    failed = []
    for node_id, proc in formats:
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failed.append(f"node {node_id}: {err.strip()[-500:]}")
    if failed:
        raise ServiceError("Kafka storage format failed:\n" + "\n".join(failed))
    layout = {"cluster_id": cluster_id, "nodes": members}
    (root / CLUSTER_LAYOUT).write_text(json.dumps(layout, indent=2))  # written last: complete
    return layout


def start_node(state_dir: Path, cache_dir: Path, node_id: int) -> dict[str, Any]:
    """Start node `node_id` of the formatted cluster, on its first ports (the quorum
    knows every controller by its address)."""
    layout = cluster_layout(state_dir)
    if layout is None:
        raise ServiceError(f"no Kafka cluster formatted in {state_dir / 'kafka'}")
    member = next((m for m in layout["nodes"] if int(m["id"]) == node_id), None)
    if member is None:
        raise ServiceError(f"the local Kafka cluster has no node {node_id}")
    lib = ensure_jars(cache_dir)
    home = _node_home(state_dir, node_id)
    props = home / "server.properties"
    log = state_dir / "logs" / f"kafka-{node_id}.log"
    pid = _spawn(shutil.which("java") or "java", f"{lib}/*", home, props, log)
    return {
        "id": node_id,
        "pid": pid,
        "bootstrap": f"127.0.0.1:{member['port']}",
        "log": str(log),
        "marker": str(props),
    }
