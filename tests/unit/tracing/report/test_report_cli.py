"""`scantrace report`: arguments, the population file, the install hint of the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from scantrace.cli import main
from scantrace.commands.report import read_population
from tracing.report.extras import INSTALL_HINT, MissingExtra, require


def test_the_install_hint_is_exact() -> None:
    assert INSTALL_HINT == "pip install 'scantrace[report]'"


@pytest.mark.parametrize(("fmt", "module"), [("html", "matplotlib"), ("xlsx", "openpyxl")])
def test_a_missing_extra_fails_with_the_hint(
    fmt: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'scantrace\[report\]'"):
        require(fmt)
    result = CliRunner().invoke(
        main,
        ["report", "weekly", "--week", "2021-W46", "--format", fmt],
        env={"SCANTRACE_CLICKHOUSE__URL": "clickhouse://127.0.0.1:1/none"},
    )
    assert result.exit_code == 1
    assert "pip install 'scantrace[report]'" in result.output
    assert module in result.output


def test_csv_and_json_need_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    require("csv")
    require("json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["weekly", "--week", "2021-W99"], "has no week 99"),
        (["weekly", "--week", "last week"], "not an ISO week"),
        (["daily", "--date", "16/11/2021"], "--date"),
        (["weekly", "--week", "2021-W46", "--format", "odt"], "--format"),
        (["weekly", "--week", "2021-W46", "--edition", "agency"], "--edition"),
        (["weekly", "--week", "2021-W46", "--by", "street"], "--by"),
        (["weekly", "--week", "2021-W46", "--weeks", "0"], "--weeks"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["report", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_no_clickhouse_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "report",
            "weekly",
            "--week",
            "2021-W46",
            "--format",
            "json",
            "--out",
            str(tmp_path / "r"),
        ],
        env={"SCANTRACE_CLICKHOUSE__URL": "clickhouse://127.0.0.1:1/none"},
    )
    assert result.exit_code == 3  # a service not reachable (scantrace.exits)
    (line,) = result.output.splitlines()
    assert line.startswith("error: ClickHouse at 127.0.0.1:1 not reachable")
    assert "hint: is ClickHouse running?" in line
    assert not (tmp_path / "r").exists()


def test_population_file(tmp_path: Path) -> None:
    good = tmp_path / "p.csv"
    good.write_text("\ufeffdistrict,population\nNinh Hải,95000\nBác Ái,30_000\n", encoding="utf-8")
    assert read_population(good) == {"Ninh Hải": 95_000, "Bác Ái": 30_000}
    bad = tmp_path / "bad.csv"
    bad.write_text("district,population\nNinh Hải,many\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_population(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,people\nx,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        read_population(wrong)
    result = CliRunner().invoke(
        main, ["report", "weekly", "--week", "2021-W46", "--population", str(bad)]
    )
    assert result.exit_code == 2 and "line 2" in result.output


def test_help_lists_both_reports() -> None:
    result = CliRunner().invoke(main, ["report", "--help"])
    assert result.exit_code == 0
    assert "weekly" in result.output and "daily" in result.output
