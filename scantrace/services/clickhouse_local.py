"""The local ClickHouse server process (chdb-core, the `local` extra), and its users.

Each role of `sinks.grants` gets a user with a random password (kept in the services'
state, mode 0600) and exactly that role's grants, in the server's `users.xml`. `default`
stays, without a password and on loopback only: the services' own probing and the tests'
fixtures (which make a database of their own per test) use it. The server listens on
127.0.0.1 only; a deployed server has no such user (`scantrace db users`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from scantrace.services.process import ServiceError, free_port, spawn
from sinks.grants import ROLES, grants, username

LOOPBACK = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"


def new_users() -> dict[str, dict[str, str]]:
    """`{role: {"username", "password"}}` with fresh random passwords."""
    return {r: {"username": username(r), "password": secrets.token_urlsafe(24)} for r in ROLES}


def render_users_xml(
    users: Mapping[str, Mapping[str, str]], database: str, cluster: str = ""
) -> str:
    """users.xml: `default` (no password, loopback) and one user per role of `users`, its
    password as a SHA-256 hash and its grants on `database` (as a node of `cluster`, when
    given) from `sinks.grants`."""
    parts = [
        "<clickhouse>",
        "  <profiles><default/></profiles>",
        "  <quotas><default/></quotas>",
        "  <users>",
        "    <default><password></password>"
        f"{LOOPBACK}<profile>default</profile><quota>default</quota></default>",
    ]
    for role, user in users.items():
        digest = hashlib.sha256(user["password"].encode()).hexdigest()
        queries = "".join(
            f"<query>{escape(f'GRANT {g.clause()}')}</query>"
            for g in grants(role, database, cluster)
        )
        name = user["username"]
        parts.append(
            f"    <{name}><password_sha256_hex>{digest}</password_sha256_hex>{LOOPBACK}"
            f"<profile>default</profile><quota>default</quota>"
            f"<grants>{queries}</grants></{name}>"
        )
    parts += ["  </users>", "</clickhouse>", ""]
    return "\n".join(parts)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this OS user only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)  # an older file of that name kept its mode
    tmp.replace(path)


def start(
    state_dir: Path,
    ports: tuple[int, int] | None = None,
    *,
    users: Mapping[str, Mapping[str, str]] | None = None,
    database: str = "scantrace",
    cluster: str = "",
    name: str = "clickhouse",
) -> dict[str, object]:
    """Start the server; `ports` (native, http) keeps an address across a restart. With
    `users`, the server's users.xml is written first (else the one already there, if any,
    is used again). `name`: its folder in `state_dir` and its log's name (one per shard
    of a local cluster)."""
    if importlib.util.find_spec("chdb") is None:
        raise ServiceError("chdb-core is not installed: pip install 'scantrace[local]'")
    home = state_dir / name
    if users is not None:
        write_private(home / "users.xml", render_users_xml(users, database, cluster))
    tcp, http = ports if ports else (free_port(), free_port())
    log = state_dir / "logs" / f"{name}.log"
    pid = spawn(
        [sys.executable, "-m", "scantrace.services.chserver", str(home), str(tcp), str(http)], log
    )
    return {
        "kind": "local",
        "pid": pid,
        "native_port": tcp,
        "http_port": http,
        "log": str(log),
        "marker": "scantrace.services.chserver",
    }


def remote_servers_xml(cluster: str, ports: list[int], secret: str) -> str:
    """config.d of a local cluster's node: `cluster` with one single-replica shard per
    native port, and the inter-server `secret` with which a shard runs its part of a
    Distributed query as the user who asked (so the grants hold on every shard)."""
    shards = "".join(
        f"<shard><replica><host>127.0.0.1</host><port>{p}</port></replica></shard>" for p in ports
    )
    return (
        f"<clickhouse><remote_servers><{cluster}><secret>{escape(secret)}</secret>{shards}"
        f"</{cluster}></remote_servers></clickhouse>"
    )
