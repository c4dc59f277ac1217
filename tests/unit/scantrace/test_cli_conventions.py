"""Conventions every command keeps: options backed by an environment variable declare it
through click (shown in --help) and it is the variable the settings read, a flag beats
the variable which beats the default; `--out -` is standard output wherever `--out`
exists; `--json` where a command reports something; `--log-format` on the components."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from ingest.gateway.settings import GatewaySettings
from ingest.timeparse import TimeSettings
from processors.worker_settings import WorkerSettings
from scantrace.cli import LONG_RUNNING, main
from scantrace.settings import ServicesSettings
from sinks.settings import SinkSettings
from tracing.report.settings import ReportSettings
from tracing.settings import TracerSettings

SETTINGS: tuple[type[BaseSettings], ...] = (
    GatewaySettings,
    WorkerSettings,
    SinkSettings,
    TracerSettings,
    ReportSettings,
    ServicesSettings,
    TimeSettings,
)
# Variables only the command line reads (no settings object of a component has them).
CLI_ONLY = {"SCANTRACE_LOAD__TOKEN", "SCANTRACE_LOG_FORMAT", "SCANTRACE_DEBUG"}


def _names(model: type[BaseModel], prefix: str, nested: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel) and nested:
            yield from _names(kind, f"{prefix}{name.upper()}{nested}", nested)
        else:
            yield f"{prefix}{name.upper()}"


def settings_variables() -> set[str]:
    out: set[str] = set()
    for cls in SETTINGS:
        config = cls.model_config
        out |= set(
            _names(cls, config.get("env_prefix") or "", config.get("env_nested_delimiter") or "")
        )
    return out


def commands(group: click.Group = main, path: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        full = f"{path} {name}".strip()
        if isinstance(command, click.Group):
            yield from commands(command, full)
        else:
            yield full, command


def test_every_option_variable_is_one_the_settings_read() -> None:
    known = settings_variables()
    assert "SCANTRACE_SINK__BATCH_ROWS" in known and "SCANTRACE_GATEWAY__PORT" in known
    declared = {}
    for path, command in [("", main), *commands()]:
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                assert param.show_envvar, (path, param.name)
                declared[str(param.envvar)] = path
    assert declared, "no option declares its variable"
    assert {v for v in declared if v not in known} <= CLI_ONLY, declared


def test_help_names_the_variables_not_by_hand() -> None:
    for path, _command in commands():
        text = CliRunner().invoke(main, [*path.split(), "--help"]).output
        assert "[env: " not in text.replace("[env var: ", ""), path


def test_a_flag_beats_the_variable_which_beats_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = main.get_command(click.Context(main), "sink")
    assert sink is not None
    assert sink.make_context("sink", []).params["batch_rows"] is None  # the settings' default
    assert SinkSettings().sink.batch_rows == 50_000
    monkeypatch.setenv("SCANTRACE_SINK__BATCH_ROWS", "7")
    assert sink.make_context("sink", []).params["batch_rows"] == 7
    assert SinkSettings().sink.batch_rows == 7  # the same variable
    assert sink.make_context("sink", ["--batch-rows", "9"]).params["batch_rows"] == 9
    changes = {"batch_rows": 9}
    assert SinkSettings().with_options(**changes).sink.batch_rows == 9


def test_out_dash_is_standard_output_wherever_out_exists() -> None:
    seen = 0
    for path, command in commands():
        for param in command.params:
            if isinstance(param, click.Option) and "--out" in param.opts:
                if isinstance(param.type, click.Path) and not param.type.file_okay:
                    continue  # a folder (demo's)
                seen += 1
                assert isinstance(param.type, click.Path) and param.type.allow_dash, path
    assert seen >= 8


@pytest.mark.parametrize(
    "path",
    [
        "db migrate",
        "load",
        "premises import",
        "demo",
        "services status",
        "audit",
        "topics create",
        "topics describe",
    ],
)
def test_commands_that_report_take_json(path: str) -> None:
    command = dict(commands())[path]
    assert any("--json" in p.opts for p in command.params if isinstance(p, click.Option))


def test_the_components_take_log_format() -> None:
    by_path = dict(commands())
    for name in LONG_RUNNING:
        options = [p for p in by_path[name].params if isinstance(p, click.Option)]
        (option,) = [p for p in options if "--log-format" in p.opts]
        assert option.envvar == "SCANTRACE_LOG_FORMAT"
