"""What commands write when not told where: never the current folder (a checkout's root).
Files they make go to `out/` (ignored by git); the worker's state to the state directory."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from processors.worker_settings import WorkerOptions
from scantrace.cli import LAZY_COMMANDS, main
from scantrace.commands import OUT_DIR
from scantrace.commands.worker import default_data_dir

ROOT = Path(__file__).resolve().parents[3]


def _commands() -> Iterator[tuple[str, click.Command]]:
    todo: list[tuple[str, click.Command]] = [("scantrace", main)]
    for name, target in LAZY_COMMANDS.items():
        module, _, attr = target.partition(":")
        todo.append((f"scantrace {name}", getattr(importlib.import_module(module), attr)))
    while todo:
        name, command = todo.pop()
        yield name, command
        if isinstance(command, click.Group):
            todo += [(f"{name} {sub}", c) for sub, c in command.commands.items()]


def test_no_command_defaults_a_path_to_the_current_folder() -> None:
    seen = 0
    for name, command in _commands():
        for param in command.params:
            if isinstance(param.type, click.Path) and isinstance(param.default, str | Path):
                seen += 1
                default = Path(param.default)
                assert default.is_absolute() or default.parts[0] == OUT_DIR.name, (
                    f"{name} {param.name} defaults to {default} in the current folder"
                )
    assert seen >= 4  # synth's files and demo's folder: the walk saw the defaults


def test_the_output_folder_is_ignored_by_git() -> None:
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert f"/{OUT_DIR}/" in lines
    assert "/worker-data/" in lines  # a --data-dir given as a relative name


def test_synth_writes_into_the_output_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["synth", "premises", "-n", "20"])
    assert result.exit_code == 0, result.output
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [
        OUT_DIR / "premises.csv"
    ]


def test_the_worker_keeps_its_folder_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert WorkerOptions().data_dir is None  # the stage leaves it to its caller
    monkeypatch.setenv("SCANTRACE_SERVICES__STATE_DIR", str(tmp_path / "state"))
    path = default_data_dir()
    assert path == tmp_path / "state" / "worker-data"
    assert path.is_dir()  # Faust makes only the last level of its datadir
