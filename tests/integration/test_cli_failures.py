"""Every command of the README, run as a user runs it, against services that are not
there: no local services started (an empty state folder, no URLs), and URLs that point
at closed ports. Each must exit with its documented code (`scantrace.exits`: 3 a
service not reachable), say so in one `error:` line whose hint names the service, and
print no traceback. The list of invocations is checked against the CLI's own command
tree and the README's code blocks, so that a new command cannot be left out.

Needs no running service (it proves the opposite; the last test, the check `run` makes
first, needs them); it is with the integration tests because it starts about sixty
processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from ingest.errors import ServiceUnavailable
from scantrace.cli import main
from scantrace.commands import check_reachable
from scantrace.services import manager
from scantrace.services.process import free_port
from scantrace.settings import ServicesSettings

ROOT = Path(__file__).resolve().parents[2]
PERIOD = ["--from", "2021-10-01", "--to", "2021-10-14"]


@dataclass(frozen=True)
class Case:
    """`argv` after `scantrace`; the exit code; a pattern of what the error line must name
    ("" for a command that needs no service). `without_urls`: the exit code when no URL
    is set, where it differs (the commands that only report the configuration)."""

    argv: tuple[str, ...]
    code: int
    service: str
    without_urls: int | None = None

    def expected(self, mode: str) -> int:
        return (
            self.without_urls
            if mode == "no-services" and self.without_urls is not None
            else self.code
        )


def _cases(files: Path) -> list[Case]:
    scans = files / "scans.jsonl"
    registry = files / "registry.csv"
    recipients = files / "recipients.csv"
    out = files / "out"
    return [
        # external services without their URLs: the message names the variable
        Case(
            ("services", "up", "--kafka", "external", "--clickhouse", "external"),
            3,
            "Kafka",
            without_urls=1,
        ),
        # with URLs set they print them; without, "not running" and exit 1
        Case(("services", "status"), 0, "", without_urls=1),
        Case(("services", "env", "worker"), 0, "services", without_urls=1),
        Case(("services", "down"), 0, ""),
        Case(("db", "migrate"), 3, "ClickHouse"),
        Case(("db", "schema", "--out", str(out / "schema.sql")), 0, ""),
        Case(("db", "users", "--out", "-"), 0, ""),
        Case(("premises", "import", str(registry)), 3, "Kafka"),
        Case(("premises", "import", "--dry-run", str(registry)), 3, "Kafka"),
        Case(("premises", "export", "--out", str(out / "r.csv")), 3, "Kafka"),
        Case(("synth", "premises", "-n", "50", "--out", str(out / "p.csv")), 0, ""),
        Case(("synth", "population", "--out", str(out / "pop.csv")), 0, ""),
        Case(
            (
                "synth",
                "scans",
                "--premises",
                str(registry),
                "--scans",
                "200",
                "--persons",
                "1000",
                "--out",
                str(out / "s.jsonl"),
            ),
            0,
            "",
        ),
        Case(("topics", "create"), 3, "Kafka"),
        Case(("topics", "describe"), 3, "Kafka"),
        Case(("load", str(scans), "--token", "t", "--gateway", "GATEWAY"), 3, "gateway"),
        Case(("load", str(scans), "--kafka"), 3, "Kafka"),
        Case(("gateway",), 3, "Kafka"),
        Case(("worker",), 3, "Kafka"),
        Case(("sink",), 3, "ClickHouse|Kafka"),
        Case(("run",), 3, "ClickHouse|Kafka"),
        Case(("demo", "--scans", "100", "--out", str(out / "demo")), 3, "ClickHouse|Kafka"),
        Case(("trace", "P0a1b2c3d4e5f", *PERIOD), 3, "ClickHouse"),
        Case(("trace", "P0a1b2c3d4e5f", *PERIOD, "--depth", "2"), 3, "ClickHouse"),
        Case(("trace-premises", "NT-000123", *PERIOD), 3, "ClickHouse"),
        Case(("api",), 3, "ClickHouse"),
        Case(("audit", "--since", "2021-10-01T00:00:00Z"), 3, "ClickHouse"),
        Case(("report", "weekly", "--week", "2021-W46", "--format", "json"), 3, "ClickHouse"),
        Case(("report", "daily", "--date", "2021-11-16", "--format", "json"), 3, "ClickHouse"),
        Case(
            ("report", "send", "--week", "last", "--recipients", str(recipients), "--dry-run"),
            3,
            "ClickHouse",
        ),
    ]


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def _path_of(argv: tuple[str, ...]) -> str:
    group: click.Command = main
    path: list[str] = []
    for word in argv:
        if not isinstance(group, click.Group):
            break
        sub = group.get_command(click.Context(group), word)
        if sub is None:
            break
        path.append(word)
        group = sub
    return " ".join(path)


def _readme_commands() -> set[str]:
    """The command paths of every `scantrace ...` line in the README's shell blocks."""
    paths = set()
    language = None  # inside a fenced block: its language
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            language = None if language is not None else (line[3:].strip() or "sh")
            continue
        if language not in ("sh", "bash"):
            continue
        for m in re.finditer(r"(?:^|\s)scantrace ((?:[a-z][a-z-]*\s*)+)", line):
            path = _path_of(tuple(m[1].split()))
            if path:
                paths.add(path)
    return paths


def test_every_command_has_a_case(tmp_path: Path) -> None:
    covered = {_path_of(c.argv) for c in _cases(tmp_path)}
    assert set(_leaf_commands(main)) - covered == set()
    assert _readme_commands() - covered == set()
    assert "trace" in _readme_commands()  # the README's blocks were read


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli-failures")
    (root / "out").mkdir()
    (root / "scans.jsonl").write_text(
        '{"event_id": "e1", "person_id": "p1", "premises_id": "NT-1", '
        '"scanned_at": "2021-11-02T08:15:00+07:00"}\n',
        encoding="utf-8",
    )
    (root / "registry.csv").write_text(
        "premises_id,name,category,district,ward,agency,address,lat,lon\n"
        "NT-1,Chợ Phan Rang,market,Phan Rang - Tháp Chàm,,,,11.56,108.99\n",
        encoding="utf-8",
    )
    (root / "recipients.csv").write_text("email,edition\na@example.org,province\n")
    return root


def _environment(mode: str, state: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SCANTRACE_KAFKA__", "SCANTRACE_CLICKHOUSE__", "SCANTRACE_AUDIT_"))
    }
    env["SCANTRACE_SERVICES__STATE_DIR"] = str(state)
    env["SCANTRACE_KAFKA__STARTUP_TIMEOUT_SECONDS"] = "2"
    env["SCANTRACE_CLICKHOUSE__PERSON_HASH_KEY"] = "a test key of 16+ characters"
    env["SCANTRACE_GATEWAY__TOKENS"] = '{"t": "gw"}'
    env["SCANTRACE_API__PORT"] = str(free_port())
    if mode == "closed-ports":
        env["SCANTRACE_KAFKA__BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
        env["SCANTRACE_CLICKHOUSE__URL"] = f"clickhouse://127.0.0.1:{free_port()}/scantrace"
    return env


def _run(argv: tuple[str, ...], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    gateway = f"http://127.0.0.1:{free_port()}"
    args = [gateway if a == "GATEWAY" else a for a in argv]
    return subprocess.run(
        [sys.executable, "-m", "scantrace.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("mode", ["no-services", "closed-ports"])
def test_each_command_against_stopped_services(mode: str, files: Path, tmp_path: Path) -> None:
    wrong = []
    for case in _cases(files):
        env = _environment(mode, tmp_path / "state")
        done = _run(case.argv, env, tmp_path)
        what = f"[{mode}] scantrace {' '.join(case.argv)}"
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        if "Traceback" in done.stderr + done.stdout:
            wrong.append(f"{what}: a traceback:\n{done.stderr[-2000:]}")
            continue
        code = case.expected(mode)
        if done.returncode != code:
            wrong.append(f"{what}: exit {done.returncode}, not {code}: {done.stderr[-800:]}")
            continue
        if code == 0 or case.argv[:2] == ("services", "status"):
            continue
        if len(errors) != 1:
            wrong.append(f"{what}: {len(errors)} error lines:\n{done.stderr[-1500:]}")
            continue
        (line,) = errors
        if not re.search(r"hint:|SCANTRACE_|scantrace [a-z]", line):
            wrong.append(f"{what}: no hint: {line}")
        if case.service and not re.search(case.service, line, re.I):
            wrong.append(f"{what}: the hint does not name {case.service}: {line}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        # a period backwards: refused before anything connects (no ClickHouse here)
        (("trace", "P1", "--from", "2021-10-14", "--to", "2021-10-01"), 2, "after its end"),
        (("trace-premises", "NT-1", "--from", "today", "--to", "-3d"), 2, "after its end"),
        (("trace", "P1", "--from", "tomorrow", "--to", "now"), 2, "not a time"),
        (("report", "weekly", "--week", "2021-W60"), 2, "has no week 60"),
        (("audit", "--since", "2021-13-01"), 2, "month must be in 1..12"),
        # a bad URL, a missing file, a folder where a file is written
        (("load", "FILE", "--token", "t", "--gateway", "127.0.0.1:8080"), 2, "not an http"),
        (("premises", "import", "no-such.csv"), 4, "no such file"),
        (("load", "no-such.jsonl", "--kafka"), 4, "no such file"),
        (("synth", "premises", "-n", "5", "--out", "/proc/scantrace.csv"), 4, "no such file"),
    ],
)
def test_bad_input_fails_first_and_in_one_line(
    argv: tuple[str, ...], code: int, words: str, files: Path, tmp_path: Path
) -> None:
    args = tuple(str(files / "scans.jsonl") if a == "FILE" else a for a in argv)
    done = _run(args, _environment("closed-ports", tmp_path / "state"), tmp_path)
    assert done.returncode == code, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error:") and words in line, line


def test_a_permission_denied_is_one_line(tmp_path: Path) -> None:
    # a folder without write permission; root writes there anyway, sysfs refuses even root
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = Path("/sys/scantrace-p.csv") if os.geteuid() == 0 else locked / "p.csv"
    done = _run(
        ("synth", "premises", "-n", "5", "--out", str(target)),
        _environment("no-services", tmp_path / "state"),
        tmp_path,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: permission denied") and "hint:" in line


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = _environment("closed-ports", tmp_path / "state")
    done = _run(("--debug", "trace", "P1", *PERIOD), env, tmp_path)
    assert done.returncode == 3
    assert "Traceback" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: ClickHouse at 127.0.0.1:")


def test_the_check_before_run_finds_the_local_services(
    services: object, services_settings: ServicesSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` gives no ClickHouse URL of its own (each child takes its role's): its check
    reads the local services' endpoints, and passes while they run."""
    for name in ("SCANTRACE_CLICKHOUSE__URL", "SCANTRACE_KAFKA__BOOTSTRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCANTRACE_SERVICES__STATE_DIR", str(services_settings.state_dir))
    ends = manager.endpoints(services_settings)
    assert ends is not None
    monkeypatch.setenv("SCANTRACE_KAFKA__BOOTSTRAP", ends.kafka_bootstrap)
    check_reachable()
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__URL", f"clickhouse://127.0.0.1:{free_port()}/x")
    with pytest.raises(ServiceUnavailable, match=r"ClickHouse at 127\.0\.0\.1:"):
        check_reachable()
