"""The `scantrace` command: one entry point, a subcommand per job."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shlex
import sys

import click
from pydantic import ValidationError

from ingest.kafka_probe import KafkaStartupError
from scantrace.services import manager
from scantrace.services.process import ServiceError
from scantrace.settings import ServicesSettings

# Subcommands that live in their own modules, imported only when used: the Faust worker
# alone takes a second to import, and `scantrace services status` should not wait for it.
LAZY_COMMANDS: dict[str, str] = {
    "gateway": "scantrace.commands.gateway:gateway",
    "premises": "scantrace.commands.premises:premises",
    "synth": "scantrace.commands.synth:synth",
    "load": "scantrace.commands.load:load",
    "worker": "scantrace.commands.worker:worker",
    "sink": "scantrace.commands.sink:sink",
    "run": "scantrace.commands.run:run",
    "demo": "scantrace.commands.demo:demo",
    "trace": "scantrace.commands.trace:trace",
    "trace-premises": "scantrace.commands.trace:trace_premises",
    "api": "scantrace.commands.api:api",
    "audit": "scantrace.commands.api:audit",
    "report": "scantrace.commands.report:report",
    "topics": "scantrace.commands.topics:topics",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        present = [n for n, target in LAZY_COMMANDS.items() if _module_exists(target)]
        return sorted({*super().list_commands(ctx), *present})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(package_name="scantrace")
@click.pass_context
def main(ctx: click.Context) -> None:
    """scantrace: QR check-in scans in, contact tracing and compliance reports out."""
    # Every command after this talks to the services `services up` started, unless the
    # environment names a broker or a ClickHouse URL itself: on a secured local broker each
    # command logs in as its own user (the children of `run` each as theirs), and ClickHouse
    # as its role's user.
    manager.apply_environment(component=ctx.invoked_subcommand or "")


@main.group()
def services() -> None:
    """Local Kafka and ClickHouse servers for development, demos and tests."""


@services.command("up")
@click.option(
    "--kafka",
    "kafka_kind",
    type=click.Choice(["auto", "apache", "noida", "external"]),
    default=None,
    help="Broker to run [env: SCANTRACE_SERVICES__KAFKA; auto = apache "
    "with Java 17+ and Maven, else noida]",
)
@click.option(
    "--clickhouse",
    "clickhouse_kind",
    type=click.Choice(["local", "external"]),
    default=None,
    help="ClickHouse to use [env: SCANTRACE_SERVICES__CLICKHOUSE; default local]",
)
@click.option(
    "--secure",
    is_flag=True,
    default=None,
    help="Apache Kafka with a SASL_SSL listener only, a SCRAM user per component and "
    "ACLs [env: SCANTRACE_SERVICES__SECURE]; `services env COMPONENT` prints a login",
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Apache Kafka nodes in one KRaft quorum; topics replicated on up to three "
    "[env: SCANTRACE_SERVICES__BROKERS; default 1, or the running cluster's]",
)
@click.option(
    "--clickhouse-shards",
    type=click.IntRange(1, 8),
    default=None,
    help="ClickHouse servers behind Distributed tables (no replicas) "
    "[env: SCANTRACE_SERVICES__CLICKHOUSE_SHARDS; default 1, or the running cluster's]",
)
def services_up(
    kafka_kind: str | None,
    clickhouse_kind: str | None,
    secure: bool | None,
    brokers: int | None,
    clickhouse_shards: int | None,
) -> None:
    """Start the services (if not running), create the topics, apply the migrations. On a
    local cluster, start again the nodes or shards that died."""
    try:
        result = manager.up(
            ServicesSettings(),
            kafka_kind,
            clickhouse_kind,
            secure=secure,
            brokers=brokers,
            clickhouse_shards=clickhouse_shards,
        )
    except (ServiceError, KafkaStartupError, ValidationError) as exc:
        from scantrace.commands import one_line

        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(1)
    started = ", ".join(result["started"]) or "nothing (already running)"
    click.echo(f"started: {started}")
    click.echo(f"kafka:      {result['kafka_bootstrap']} ({_kafka_kind(result)})")
    click.echo(f"clickhouse: {result['clickhouse_native']}  {result['clickhouse_http']}")
    _echo_members(result)
    if result["topics_created"]:
        click.echo(f"topics created: {', '.join(result['topics_created'])}")
    if result["migrations_applied"]:
        click.echo(f"migrations applied: {', '.join(result['migrations_applied'])}")


@services.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
def services_status(as_json: bool) -> None:
    """Show what runs where; exit 1 when the services are not running."""
    result = manager.status(ServicesSettings())
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif result["running"]:
        click.echo(f"kafka:      {result['kafka_bootstrap']} ({_kafka_kind(result)})")
        click.echo(f"clickhouse: {result['clickhouse_native']}  {result['clickhouse_http']}")
        _echo_members(result)
        click.echo(f"state:      {result['state_dir']}")
    else:
        click.echo("not running (scantrace services up)")
    sys.exit(0 if result["running"] else 1)


def _echo_members(result: dict[str, object]) -> None:
    """One line per node and shard of a local cluster."""
    nodes, shards = result.get("kafka_nodes"), result.get("clickhouse_shards")
    if isinstance(nodes, list) and len(nodes) > 1:
        for n in nodes:
            state = "alive" if n["alive"] else "DOWN"
            click.echo(f"  kafka node {n['id']}:  {n['bootstrap']}  pid {n['pid']} {state}")
    if isinstance(shards, list) and len(shards) > 1:
        for sh in shards:
            state = "alive" if sh["alive"] else "DOWN"
            click.echo(f"  clickhouse shard {sh['shard']}: {sh['native']}  pid {sh['pid']} {state}")


def _kafka_kind(result: dict[str, object]) -> str:
    kafka = result["kafka"]
    security = result.get("kafka_security")
    kind = str(kafka["kind"]) if isinstance(kafka, dict) else "?"
    if isinstance(security, dict):
        return f"{kind}, {security['protocol']} {security['mechanism']}, CA {security['cafile']}"
    return kind


@services.command("env")
@click.argument("component", type=click.Choice(manager.ENV_COMPONENTS))
def services_env(component: str) -> None:
    """Print the SCANTRACE_...= lines COMPONENT needs to use the running services, shell
    quoted: `eval "$(scantrace services env worker)"`. On a secured broker they log in
    as the component's own user."""
    try:
        env = manager.component_env(ServicesSettings(), component)
    except ServiceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for name, value in env.items():
        click.echo(f"{name}={shlex.quote(value)}")
    if env:
        click.echo(f"export {' '.join(env)}")


@services.command("down")
def services_down() -> None:
    """Stop every process `services up` started."""
    stopped = manager.down(ServicesSettings())
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@main.group()
def db() -> None:
    """ClickHouse schema and users."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (each once; safe to re-run)."""
    from sinks.migrations import migrate
    from sinks.settings import SinkSettings

    applied = migrate(SinkSettings().clickhouse)
    for a in applied:
        click.echo(f"applied {a.version:03d} {a.name}")
    if not applied:
        click.echo("schema is up to date")


@db.command("schema")
@click.option("--cluster", default="", help="ON CLUSTER name; empty = single node")
@click.option("--database", default="scantrace", help="Database name")
@click.option("--retention-days", type=click.IntRange(1, 3650), default=28, help="Scans TTL")
@click.option(
    "--audit-retention-days", type=click.IntRange(1, 36500), default=730, help="Audit log TTL"
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None)
def db_schema(
    cluster: str, database: str, retention_days: int, audit_retention_days: int, out: str | None
) -> None:
    """Print the schema as SQL (the statements `migrate` applies), for deploy/clickhouse/."""
    from sinks.clickhouse_settings import ClickHouseSettings
    from sinks.schema import render_script

    settings = ClickHouseSettings(
        url=f"clickhouse://127.0.0.1/{database}",
        cluster=cluster,
        retention_days=retention_days,
        audit_retention_days=audit_retention_days,
    )
    sql = render_script(settings)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(sql)
    else:
        click.echo(sql, nl=False)


@db.command("users")
@click.option("--cluster", default="", help="ON CLUSTER name; empty = single node")
@click.option("--database", default="scantrace", help="Database name")
@click.option(
    "--password",
    "passwords",
    multiple=True,
    metavar="ROLE=SECRET",
    help="A role's password, printed as its SHA-256 hash; repeatable. Roles without one "
    "get an envsubst placeholder ${SCANTRACE_CH_<ROLE>_PASSWORD}",
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None)
def db_users(cluster: str, database: str, passwords: tuple[str, ...], out: str | None) -> None:
    """Print the ClickHouse roles, users and grants of every component as SQL (a real
    server or cluster; the local services define the same in their users.xml)."""
    import hashlib

    from sinks.grants import ROLES, render_users_sql

    hashes: dict[str, str] = {}
    for item in passwords:
        role, sep, secret = item.partition("=")
        if not sep or role not in ROLES or not secret:
            click.echo(
                f"error: --password wants ROLE=SECRET, ROLE one of {', '.join(ROLES)}", err=True
            )
            sys.exit(2)
        hashes[role] = hashlib.sha256(secret.encode()).hexdigest()
    try:
        sql = render_users_sql(database, cluster, hashes)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(sql)
    else:
        click.echo(sql, nl=False)


if __name__ == "__main__":
    main()
