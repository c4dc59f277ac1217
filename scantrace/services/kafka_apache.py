"""Apache Kafka 4.4.0, KRaft, one combined broker+controller on 127.0.0.1.

The jars come from Maven Central through `mvn` into a cache outside the repository and
are reused on the next start.
"""

from __future__ import annotations

import re
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
    port: int, cport: int, data: Path, partitions: int, security: dict[str, Any] | None
) -> str:
    listeners = (
        kafka_security.properties(security, port, cport)
        if security
        else [
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ]
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{cport}",
            *listeners,
            "controller.listener.names=CONTROLLER",
            f"log.dirs={data}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=8",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=8",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
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
    (home / "log4j2.properties").write_text(_LOG4J2)
    log = state_dir / "logs" / "kafka.log"
    pid = spawn(
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
    return {
        "kind": "apache",
        "pid": pid,
        "bootstrap": f"127.0.0.1:{port}",
        "log": str(log),
        "marker": str(props),
        **({"security": security} if security else {}),
    }
