"""The CLI's tracer is the operating system's user of the process, by its user id: the
USER and LOGNAME variables anyone can set do not change it."""

from __future__ import annotations

import os
import pwd

import pytest

from scantrace.commands import trace


def test_the_actor_comes_from_the_uid_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("USER", "LOGNAME", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    actor = trace.cli_actor()
    uid = os.getuid()
    assert actor.name == f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    assert "mallory" not in actor.name
    assert (actor.role, actor.channel) == ("tracer", "cli")
    assert trace.cli_actor("auditor").role == "auditor"


def test_a_uid_without_a_passwd_entry_is_named_by_its_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(trace.pwd, "getpwuid", missing)
    monkeypatch.setattr(trace.os, "getuid", lambda: 4242)
    monkeypatch.setenv("USER", "mallory")
    assert trace.cli_actor().name == "uid 4242"
