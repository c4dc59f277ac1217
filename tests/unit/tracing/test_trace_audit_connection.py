"""Where the audit log is read: the auditor's own connection when configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracing.settings import TracerSettings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("SCANTRACE_AUDIT_CLICKHOUSE__URL", "SCANTRACE_AUDIT_CLICKHOUSE__CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__URL", "clickhouses://scantrace_tracer:t@ch/prov")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("SCANTRACE_CLICKHOUSE__CA_FILE", str(ca))
    return ca


def test_without_an_audit_url_the_tracer_connection_reads_it(env: Path) -> None:
    s = TracerSettings()
    assert s.auditor_clickhouse() == s.clickhouse


def test_the_audit_url_and_the_shared_ca_file(
    env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(
        "SCANTRACE_AUDIT_CLICKHOUSE__URL", "clickhouses://scantrace_auditor:a@ch/prov"
    )
    audit = TracerSettings().auditor_clickhouse()
    assert audit.parts()[3:] == ("scantrace_auditor", "a")
    assert audit.secure and audit.ca_file == str(env)  # the main CA file unless its own
    own = tmp_path / "audit-ca.pem"
    own.write_text("y")
    monkeypatch.setenv("SCANTRACE_AUDIT_CLICKHOUSE__CA_FILE", str(own))
    assert TracerSettings().auditor_clickhouse().ca_file == str(own)
    assert TracerSettings().clickhouse.parts()[3] == "scantrace_tracer"
