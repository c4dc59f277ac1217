"""The Dockerfile and its build context (.dockerignore allowlist) ship every package."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from deploy_testkit import REPO


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def packages() -> set[str]:
    patterns = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return {p.rstrip("*") for p in patterns}


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text(encoding="utf-8")


def test_every_package_and_the_metadata_is_copied_and_allowed_in_the_context() -> None:
    copied = set(re.findall(r"^COPY (\S+) \./", dockerfile(), re.M))
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    assert packages() <= copied, packages() - copied
    assert packages() <= allowed, packages() - allowed
    readme = pyproject()["project"]["readme"]
    assert readme in allowed and "pyproject.toml" in allowed
    assert re.search(rf"^COPY pyproject\.toml {re.escape(readme)} \./", dockerfile(), re.M)
    for pkg in packages():
        assert (REPO / pkg).is_dir(), pkg


def test_image_is_python_3_11_slim_running_the_cli_as_non_root() -> None:
    text = dockerfile()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(b == "python:3.11-slim" for b in bases), bases
    assert re.search(r'^ENTRYPOINT \["scantrace"\]$', text, re.M)
    assert "scantrace" in pyproject()["project"]["scripts"]
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"pip install .*scantrace", text)
