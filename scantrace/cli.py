"""The `scantrace` command: one entry point, a subcommand per job.

Every failure of every command ends here as one line on standard error and an exit code
from a small set (`scantrace.exits`; a traceback only with `--debug`)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import shlex
import sys
import traceback
from typing import Any

import click

from scantrace import exits, progress
from scantrace.logs import CHATTY_LIBRARIES, FORMATS, LOG_FORMAT_ENV
from scantrace.services import manager
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
# The components that run until stopped: each takes `--log-format` (declared here, once).
LONG_RUNNING: frozenset[str] = frozenset({"gateway", "worker", "sink", "api", "run"})


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
        if cmd_name in LONG_RUNNING:
            _add_log_format(command)
        return command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:  # the group's own options
            raise click.exceptions.Exit(_fail(exc, debug=False)) from None

    def invoke(self, ctx: click.Context) -> Any:
        """Every command, with its failures mapped to one line and an exit code."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, BrokenPipeError):
            raise  # a chosen exit; a closed pipe (click quiets it)
        except SystemExit:
            raise
        except (Exception, click.Abort, KeyboardInterrupt) as exc:
            raise click.exceptions.Exit(_fail(exc, debug=bool(ctx.params.get("debug")))) from None


def _fail(exc: BaseException, debug: bool) -> int:
    """Print `exc` as one line (after its traceback with --debug); its exit code."""
    failure = exits.describe(exc)
    if debug and not isinstance(exc, click.ClickException):
        traceback.print_exception(exc, file=sys.stderr)
    click.echo(failure.line(), err=True)
    return failure.code


def _add_log_format(command: click.Command) -> None:
    if any(p.name == "log_format" for p in command.params):
        return
    command.params.append(
        click.Option(
            ["--log-format"],
            type=click.Choice(FORMATS),
            default="text",
            envvar=LOG_FORMAT_ENV,
            show_envvar=True,
            show_default=True,
            expose_value=False,
            callback=_set_log_format,
            help="Log lines as text, or as JSON objects (timestamp, level, component, "
            "message, context)",
        )
    )


def _set_log_format(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # The components (and the children of `run`) read the format from the variable.
    os.environ[LOG_FORMAT_ENV] = value
    return value


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


def _quiet_libraries(debug: bool) -> None:
    """Short commands report a failure in one line: the client libraries' own log lines
    (with tracebacks) about it are noise, unless --debug (the components set their own
    levels, `scantrace.logs.setup_logging`)."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.CRITICAL)


@click.group(
    cls=LazyGroup,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "show_default": True,
        "auto_envvar_prefix": None,
    },
    epilog="Exit codes: "
    + ", ".join(f"{code} {meaning}" for code, meaning in exits.EXIT_CODES.items())
    + ".",
)
@click.version_option(package_name="scantrace")
@click.option(
    "--debug",
    is_flag=True,
    envvar="SCANTRACE_DEBUG",
    show_envvar=True,
    help="On failure, print the traceback before the one-line error",
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """scantrace: QR check-in scans in, contact tracing and compliance reports out."""
    if ctx.invoked_subcommand not in LONG_RUNNING:
        _quiet_libraries(debug)
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
    help="Broker to run [auto = apache with Java 17+ and Maven, else noida]",
    envvar="SCANTRACE_SERVICES__KAFKA",
    show_envvar=True,
)
@click.option(
    "--clickhouse",
    "clickhouse_kind",
    type=click.Choice(["local", "external"]),
    default=None,
    help="ClickHouse to use [default local]",
    envvar="SCANTRACE_SERVICES__CLICKHOUSE",
    show_envvar=True,
)
@click.option(
    "--secure",
    is_flag=True,
    default=None,
    help="Apache Kafka with a SASL_SSL listener only, a SCRAM user per component and "
    "ACLs; `services env COMPONENT` prints a login",
    envvar="SCANTRACE_SERVICES__SECURE",
    show_envvar=True,
)
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Apache Kafka nodes in one KRaft quorum; topics replicated on up to three "
    "[default 1, or the running cluster's]",
    envvar="SCANTRACE_SERVICES__BROKERS",
    show_envvar=True,
)
@click.option(
    "--clickhouse-shards",
    type=click.IntRange(1, 8),
    default=None,
    help="ClickHouse servers behind Distributed tables (no replicas) "
    "[default 1, or the running cluster's]",
    envvar="SCANTRACE_SERVICES__CLICKHOUSE_SHARDS",
    show_envvar=True,
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
    result = manager.up(
        ServicesSettings(),
        kafka_kind,
        clickhouse_kind,
        secure=secure,
        brokers=brokers,
        clickhouse_shards=clickhouse_shards,
    )
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
    env = manager.component_env(ServicesSettings(), component)
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
@click.option("--json", "as_json", is_flag=True, help="The migrations applied, as JSON")
def db_migrate(as_json: bool) -> None:
    """Apply pending schema migrations (each once; safe to re-run).

    ClickHouse from SCANTRACE_CLICKHOUSE__URL (or the running local services). On a
    terminal it shows each statement and the rows a copying statement has written.
    """
    from sinks.migrations import migrate
    from sinks.settings import SinkSettings

    settings = SinkSettings().clickhouse
    with _MigrationProgress(settings) as follow:
        applied = migrate(settings, step=follow.step)
    if as_json:
        click.echo(
            json.dumps(
                {"applied": [{"version": a.version, "name": a.name} for a in applied]},
                indent=2,
            )
        )
        return
    for a in applied:
        click.echo(f"applied {a.version:03d} {a.name}")
    if not applied:
        click.echo("schema is up to date")


class _MigrationProgress:
    """On a terminal: the statement running and the rows ClickHouse has written for it
    (read from `system.processes` on a second connection); nothing elsewhere."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.label = "migrating"
        self.stack = contextlib.ExitStack()
        self.client: Any = None

    def __enter__(self) -> _MigrationProgress:
        if progress.enabled():
            self.stack.enter_context(progress.ticker("migrating", self.status))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()
        if self.client is not None:
            self.client.disconnect()

    def step(self, migration: Any, i: int, n: int) -> None:
        self.label = f"{migration.version:03d} {migration.name}, statement {i}/{n}"

    def status(self) -> str:
        if self.client is None:
            from sinks.client import connect

            self.client = connect(self.settings, database="default", send_receive_timeout=5)
        rows = self.client.execute(
            "SELECT sum(written_rows) FROM system.processes WHERE query_id != queryID()"
            " AND user = currentUser()"
        )
        written = int(rows[0][0] or 0) if rows else 0
        return f"{self.label}{f', {written:,} rows written' if written else ''}"


@db.command("schema")
@click.option("--cluster", default="", help="ON CLUSTER name; empty = single node")
@click.option("--database", default="scantrace", help="Database name")
@click.option("--retention-days", type=click.IntRange(1, 3650), default=28, help="Scans TTL")
@click.option(
    "--audit-retention-days", type=click.IntRange(1, 36500), default=730, help="Audit log TTL"
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None,
    help="File to write, - for standard output [default: standard output]",
)
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
    if out and out != "-":
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
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None,
    help="File to write, - for standard output [default: standard output]",
)
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
    if out and out != "-":
        with open(out, "w", encoding="utf-8") as f:
            f.write(sql)
    else:
        click.echo(sql, nl=False)


if __name__ == "__main__":
    main()
