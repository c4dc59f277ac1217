"""`services up --secure`: the local Apache Kafka with TLS, SCRAM users and ACLs.

- Clients reach the broker on one `SASL_SSL` listener only, SCRAM-SHA-512, with a server
  certificate for 127.0.0.1/localhost signed by a CA made at the first start (openssl).
- The controller listener (loopback) is secured too: `SASL_SSL` with PLAIN and one static
  user, the broker itself. SCRAM cannot serve there (its credentials live in the metadata
  the controller serves), and left open it would hand the cluster to any local process.
- One SCRAM user per component (gateway, worker, sink, tracer, admin) and one for the
  broker, with random passwords, added when the storage is formatted. The client
  listener also takes SASL PLAIN (inside the same TLS) for the same users and
  passwords: librdkafka before 2.6.1, Debian 12's kcat among them, answers Kafka 4's
  SCRAM nonce check wrongly and cannot log in otherwise. A user is the same principal
  whichever mechanism it used, so the ACLs are the same.
- `StandardAuthorizer`, no access without an ACL; `admin` and the broker are super users;
  the ACLs below let every other user do its job and nothing else.

Everything lives in STATE_DIR/kafka/security (0700; keys, passwords 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePattern,
    ResourceType,
)
from pydantic import SecretStr

from ingest.kafka_settings import KafkaSettings
from scantrace.services.process import ServiceError

PROTOCOL: Final = "SASL_SSL"
MECHANISM: Final = "SCRAM-SHA-512"
USERS: Final = ("gateway", "worker", "sink", "tracer", "admin")
BROKER_USER: Final = "broker"
SUPER_USERS: Final = ("admin", BROKER_USER)
RECORD: Final = "security.json"


def folder(kafka_home: Path) -> Path:
    return kafka_home / "security"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ServiceError("--secure needs the openssl command (Debian package openssl)")
    result = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def make_certificates(tls: Path) -> None:
    """A CA, and a server certificate it signs for 127.0.0.1 and localhost (EC P-256)."""
    _private_dir(tls)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
        "-subj", "/CN=scantrace local Kafka CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=tls,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=scantrace-kafka",
        cwd=tls,
    )  # fmt: skip
    (tls / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "825", "-extfile", "server.ext",
        cwd=tls,
    )  # fmt: skip
    # Kafka's PEM keystore: the private key (PKCS#8, unencrypted) and the chain, one file.
    _write_private(
        tls / "keystore.pem", (tls / "server.key").read_text() + (tls / "server.pem").read_text()
    )
    for name in ("ca.key", "server.key"):
        (tls / name).chmod(0o600)


def create(kafka_home: Path) -> dict[str, Any]:
    """Certificates and users for a broker about to be formatted; returns the record."""
    home = folder(kafka_home)
    shutil.rmtree(home, ignore_errors=True)
    _private_dir(home)
    make_certificates(home / "tls")
    passwords = _private_dir(home / "passwords")
    users: dict[str, dict[str, str]] = {}
    for name in (*USERS, BROKER_USER):
        password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in JAAS and --add-scram
        path = passwords / name
        _write_private(path, password + "\n")
        users[name] = {"username": name, "password": password, "password_file": str(path)}
    record = {
        "protocol": PROTOCOL,
        "mechanism": MECHANISM,
        "cafile": str(home / "tls" / "ca.pem"),
        "keystore": str(home / "tls" / "keystore.pem"),
        "users": users,
    }
    _write_private(home / RECORD, json.dumps(record, indent=2))
    return record


def load(kafka_home: Path) -> dict[str, Any] | None:
    """The record of a broker formatted with security, None if it was formatted without."""
    try:
        data = json.loads((folder(kafka_home) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def public(record: dict[str, Any]) -> dict[str, Any]:
    """What `services status --json` shows: the components' users, not the broker's."""
    return {
        "protocol": record["protocol"],
        "mechanism": record["mechanism"],
        "cafile": record["cafile"],
        "users": {name: record["users"][name] for name in USERS},
    }


def format_args(record: dict[str, Any]) -> list[str]:
    """`kafka-storage format` arguments that add every SCRAM user."""
    args: list[str] = []
    for user in record["users"].values():
        args += [
            "--add-scram",
            f"{MECHANISM}=[name={user['username']},password={user['password']}]",
        ]
    return args


def properties(record: dict[str, Any], port: int, cport: int) -> list[str]:
    """The listener and security lines of server.properties."""
    broker = record["users"][BROKER_USER]
    scram_login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{broker["password"]}";'
    )
    plain_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{BROKER_USER}" password="{broker["password"]}" '
        f'user_{BROKER_USER}="{broker["password"]}";'
    )
    client_plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        + " ".join(f'user_{u}="{record["users"][u]["password"]}"' for u in USERS)
        + ";"
    )
    return [
        f"listeners=CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=CLIENT://127.0.0.1:{port}",
        "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SASL_SSL",
        "inter.broker.listener.name=CLIENT",
        f"listener.name.client.sasl.enabled.mechanisms={MECHANISM},PLAIN",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.client.scram-sha-512.sasl.jaas.config={scram_login}",
        f"listener.name.client.plain.sasl.jaas.config={client_plain}",
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        f"listener.name.controller.plain.sasl.jaas.config={plain_login}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={record['keystore']}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={record['cafile']}",
        "ssl.endpoint.identification.algorithm=https",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=" + ";".join(f"User:{u}" for u in SUPER_USERS),
        "allow.everyone.if.no.acl.found=false",
    ]


def fields(record: dict[str, Any], user: str) -> dict[str, Any]:
    """The `KafkaSettings` fields that log in as `user` (every security field, so none
    of another configuration is left over); the password through its file, so that it
    stays out of process environments."""
    return {
        "security_protocol": record["protocol"],
        "sasl_mechanism": record["mechanism"],
        "sasl_username": user,
        "sasl_password": SecretStr(""),
        "sasl_password_file": Path(record["users"][user]["password_file"]),
        "ssl_cafile": Path(record["cafile"]),
        "ssl_certfile": None,
        "ssl_keyfile": None,
    }


def user_settings(
    record: dict[str, Any], user: str, base: KafkaSettings, bootstrap: str
) -> KafkaSettings:
    """`base` (topics, partitions...) pointed at `bootstrap`, logged in as `user`."""
    return KafkaSettings.model_validate(
        {**base.model_dump(), "bootstrap": bootstrap, **fields(record, user)}
    )


def env_lines(record: dict[str, Any], user: str) -> dict[str, str]:
    """`fields` as SCANTRACE_KAFKA__ variables."""
    return {
        f"SCANTRACE_KAFKA__{name.upper()}": str(value)
        for name, value in fields(record, user).items()
        if value not in (None, "") and not isinstance(value, SecretStr)
    }


# -- ACLs -------------------------------------------------------------------------------


def _allow(
    user: str,
    operation: ACLOperation,
    kind: ResourceType,
    name: str,
    pattern: ACLResourcePatternType = ACLResourcePatternType.LITERAL,
) -> ACL:
    return ACL(
        principal=f"User:{user}",
        host="*",
        operation=operation,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(kind, name, pattern),
    )


def acls(kafka: KafkaSettings, worker_app_id: str, sink_group: str) -> list[ACL]:
    """Each component's rights, on the topic names of `kafka` (its prefix included).

    READ and WRITE imply DESCRIBE. The worker's changelog topics, consumer group and
    transactional ids all start with its Faust app id, hence prefixed ACLs there; the
    sink's group is prefixed too (several sinks may use suffixed groups)."""
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    prefixed = ACLResourcePatternType.PREFIXED
    read, write = ACLOperation.READ, ACLOperation.WRITE
    rules = [
        # gateway: publishes scans and dead letters (idempotent producer)
        _allow("gateway", write, topic, kafka.raw),
        _allow("gateway", write, topic, kafka.dlq),
        # worker: scans.raw + premises in; scans.enriched + scans.dlq out; its own state
        _allow("worker", read, topic, kafka.raw),
        _allow("worker", read, topic, kafka.premises),
        _allow("worker", write, topic, kafka.enriched),
        _allow("worker", write, topic, kafka.dlq),
        _allow("worker", ACLOperation.ALL, topic, worker_app_id, prefixed),
        _allow("worker", read, group, worker_app_id, prefixed),
        _allow("worker", write, txn, worker_app_id, prefixed),
        # sink: everything it stores, with its group
        _allow("sink", read, topic, kafka.enriched),
        _allow("sink", read, topic, kafka.premises),
        _allow("sink", read, topic, kafka.dlq),
        _allow("sink", read, group, sink_group, prefixed),
        # tracer: nothing (it reads ClickHouse only); admin: super user
    ]
    # idempotent producers (the gateway's; the worker's under exactly_once)
    rules += [
        _allow(user, ACLOperation.IDEMPOTENT_WRITE, ResourceType.CLUSTER, "kafka-cluster")
        for user in ("gateway", "worker")
    ]
    return rules


def apply_acls(admin: KafkaSettings, rules: list[ACL]) -> None:
    """Create the ACLs (creating one that exists changes nothing)."""
    client = KafkaAdminClient(**admin.kafka_python_config(), client_id="scantrace-admin")
    try:
        result = client.create_acls(rules)
    finally:
        client.close()
    failed = result.get("failed") or []
    if failed:
        raise ServiceError(f"Kafka refused {len(failed)} ACLs, the first: {failed[0]}")
