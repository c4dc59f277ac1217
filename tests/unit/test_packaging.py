"""pyproject.toml against the code: every third-party module the packages import is
declared, every declared dependency is used, and the license is an SPDX expression with
its text beside it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
PACKAGES = ("ingest", "processors", "sinks", "tracing", "scantrace")

# Declared dependencies no module imports, and why they are there all the same.
NOT_IMPORTED = {
    "cramjam": "aiokafka's zstd codec (the gateway and the worker compress with zstd)",
    "zstandard": "kafka-python's zstd codec (it reads what the others compress)",
}
# Optional extras of the packages; `dev` is the tools', not the code's.
CODE_EXTRAS = ("local", "report")


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _third_party_imports() -> Iterator[tuple[str, str]]:
    """(top-level module, where) for every import of a module neither ours nor stdlib."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES or top == "__future__":
                        continue
                    yield top, f"{path.relative_to(ROOT)}:{node.lineno}"


def _distributions(module: str) -> set[str]:
    return {_name(dist) for dist in packages_distributions().get(module, [])}


def test_every_third_party_module_the_packages_import_is_declared() -> None:
    declared = {_name(r) for r in PROJECT["dependencies"]}
    for extra in CODE_EXTRAS:
        declared |= {_name(r) for r in PROJECT["optional-dependencies"][extra]}
    undeclared: dict[str, str] = {}
    for module, where in _third_party_imports():
        dists = _distributions(module)
        assert dists, f"{module} ({where}) is imported but no installed distribution has it"
        if not dists & declared:
            undeclared.setdefault(f"{module} ({', '.join(sorted(dists))})", where)
    assert not undeclared, f"imported but not in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_imported_or_says_why_not() -> None:
    imported: set[str] = set()
    for module, _ in _third_party_imports():
        imported |= _distributions(module)
    unused = {_name(r) for r in PROJECT["dependencies"]} - imported
    assert unused == set(NOT_IMPORTED), (
        f"declared but never imported: {sorted(unused - set(NOT_IMPORTED))}; "
        f"imported after all, remove from NOT_IMPORTED: {sorted(set(NOT_IMPORTED) - unused)}"
    )


def test_the_walk_sees_a_lazy_import_and_skips_the_stdlib() -> None:
    found = dict(_third_party_imports())
    assert "chdb" in found  # imported inside a function (the local ClickHouse server)
    assert "faust" in found and "asyncio" not in found and "ingest" not in found


def test_the_license_is_an_spdx_expression_with_its_text() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    # PEP 639 needs setuptools 77; an older one warns about (or refuses) the string form.
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]
    assert not any(c.startswith("License ::") for c in PROJECT.get("classifiers", []))
