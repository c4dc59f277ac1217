"""The local ClickHouse's users: users.xml from the role grants, the state kept private,
and which URL each command gets (`scantrace run`'s children each their own)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from scantrace.services import manager
from scantrace.services.clickhouse_local import new_users, render_users_xml, write_private
from scantrace.services.process import ServiceError
from scantrace.settings import ServicesSettings
from sinks.grants import ROLES, grants


def test_users_xml_has_default_on_loopback_and_each_role_with_its_grants() -> None:
    users = new_users()
    root = ElementTree.fromstring(render_users_xml(users, "prov"))
    default = root.find("users/default")
    assert default is not None
    assert default.findtext("password") in ("", None)
    assert [ip.text for ip in default.iter("ip")] == ["127.0.0.1", "::1"]
    assert default.find("grants") is None  # every right: the services' probe, test fixtures
    for role in ROLES:
        user = root.find(f"users/{users[role]['username']}")
        assert user is not None, role
        digest = hashlib.sha256(users[role]["password"].encode()).hexdigest()
        assert user.findtext("password_sha256_hex") == digest
        assert [ip.text for ip in user.iter("ip")] == ["127.0.0.1", "::1"]
        queries = [q.text for q in user.iter("query")]
        assert queries == [f"GRANT {g.clause()}" for g in grants(role, "prov")]
    assert users["tracer"]["password"] not in render_users_xml(users, "prov")


def test_passwords_are_random_and_long() -> None:
    a, b = new_users(), new_users()
    assert {u["password"] for u in a.values()}.isdisjoint(u["password"] for u in b.values())
    assert all(len(u["password"]) >= 32 for u in a.values())


def test_write_private_makes_the_file_0600_even_over_an_open_one(tmp_path: Path) -> None:
    path = tmp_path / "state" / "services.json"
    path.parent.mkdir()
    path.write_text("{}")
    path.chmod(0o644)
    write_private(path, '{"a": 1}')
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text()) == {"a": 1}


def _state(tmp_path: Path, *, users: bool = True) -> tuple[ServicesSettings, dict[str, Any]]:
    """A state as `up` saves it, with this test process standing in for the servers."""
    settings = ServicesSettings(state_dir=tmp_path)
    ch: dict[str, Any] = {
        "kind": "local",
        "pid": os.getpid(),
        "native_port": 9123,
        "http_port": 9124,
    }
    if users:
        ch["users"] = new_users()
    state = {
        "kafka": {"kind": "external", "bootstrap": "127.0.0.1:9092"},
        "clickhouse": ch,
        "database": "prov",
    }
    write_private(manager.state_path(settings), json.dumps(state))
    return settings, state


def test_clickhouse_url_for_each_role(tmp_path: Path) -> None:
    settings, state = _state(tmp_path)
    for role in ROLES:
        url = manager.clickhouse_url_for(settings, role)
        user = state["clickhouse"]["users"][role]
        assert url == f"clickhouse://{user['username']}:{user['password']}@127.0.0.1:9123/prov"
        assert manager.clickhouse_url_for(state, role) == url
    with pytest.raises(ValueError, match="unknown ClickHouse role"):
        manager.clickhouse_url_for(state, "default")


def test_without_users_or_with_an_external_server_every_role_gets_the_one_url(
    tmp_path: Path,
) -> None:
    _, state = _state(tmp_path, users=False)
    assert manager.clickhouse_url_for(state, "sink") == "clickhouse://127.0.0.1:9123/prov"
    external = {**state, "clickhouse": {"kind": "external", "url": "clickhouses://u:p@ch/db"}}
    assert manager.clickhouse_url_for(external, "tracer") == "clickhouses://u:p@ch/db"
    assert manager.clickhouse_users(external) == {}
    stopped = {**state, "clickhouse": {**state["clickhouse"], "pid": 2**22 + 7}}
    with pytest.raises(ServiceError, match="not running"):
        manager.clickhouse_url_for(stopped, "tracer")


def test_status_lists_the_users_once(tmp_path: Path) -> None:
    settings, state = _state(tmp_path)
    out = manager.status(settings)
    assert set(out["clickhouse_users"]) == set(ROLES)
    assert out["clickhouse_users"]["report"]["url"] == manager.clickhouse_url_for(state, "report")
    assert "users" not in out["clickhouse"]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("SCANTRACE_KAFKA__BOOTSTRAP", manager.CLICKHOUSE_URL, manager.AUDIT_CLICKHOUSE_URL):
        monkeypatch.setenv(var, "")  # recorded, so what apply_environment sets is undone
        monkeypatch.delenv(var)
    return monkeypatch


def test_each_command_gets_its_role(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    settings, state = _state(tmp_path)
    url = {r: manager.clickhouse_url_for(state, r) for r in ROLES}
    expected = {
        "sink": ("sink", None),
        "trace": ("tracer", None),
        "trace-premises": ("tracer", None),
        "api": ("tracer", "auditor"),
        "audit": ("tracer", "auditor"),
        "report": ("report", None),
        "db": ("migrator", None),
        "demo": ("tracer", None),
    }
    for command, (main_role, audit_role) in expected.items():
        for var in (manager.CLICKHOUSE_URL, manager.AUDIT_CLICKHOUSE_URL):
            clean_env.delenv(var, raising=False)
        manager.apply_environment(settings, command)
        assert os.environ[manager.CLICKHOUSE_URL] == url[main_role], command
        assert os.environ.get(manager.AUDIT_CLICKHOUSE_URL) == (
            url[audit_role] if audit_role else None
        ), command
        assert os.environ["SCANTRACE_KAFKA__BOOTSTRAP"] == "127.0.0.1:9092"


def test_run_sets_no_clickhouse_url_and_its_children_pick_their_own(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings, state = _state(tmp_path)
    for parent in ("run", "worker", "gateway", "services"):
        manager.apply_environment(settings, parent)
        assert manager.CLICKHOUSE_URL not in os.environ, parent
    # The demo's own URL (tracer) is inherited by the sink it starts: replaced by the sink's.
    manager.apply_environment(settings, "demo")
    manager.apply_environment(settings, "sink")
    assert os.environ[manager.CLICKHOUSE_URL] == manager.clickhouse_url_for(state, "sink")


def test_a_url_of_the_users_own_is_never_replaced(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings, _ = _state(tmp_path)
    clean_env.setenv(manager.CLICKHOUSE_URL, "clickhouse://127.0.0.1:9123/t_mine")
    manager.apply_environment(settings, "api")
    assert os.environ[manager.CLICKHOUSE_URL] == "clickhouse://127.0.0.1:9123/t_mine"
    assert manager.AUDIT_CLICKHOUSE_URL not in os.environ  # not a mix of two databases


def test_without_a_command_the_admin_url_as_before(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    settings, _ = _state(tmp_path)
    manager.apply_environment(settings)
    assert os.environ[manager.CLICKHOUSE_URL] == "clickhouse://127.0.0.1:9123/prov"
