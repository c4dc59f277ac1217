"""Declared surfaces: each stage package lists in `__all__` the modules it offers, and
code outside a stage (a later stage, the `scantrace` shell) imports only those modules
and only names that do not start with `_`. Tests and benchmarks may reach further."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "processors", "sinks", "tracing")
IMPORTERS = (*STAGES, "scantrace")


def _submodules(stage: str) -> set[str]:
    here = ROOT / stage
    modules = {p.stem for p in here.glob("*.py") if p.stem != "__init__"}
    return modules | {p.parent.name for p in here.glob("*/__init__.py")}


def _imports(package: str) -> Iterator[tuple[str, int, str, str]]:
    """(file, line, module, name) of every absolute import from another stage."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] in STAGES and node.module.split(".")[0] != package:
                    for alias in node.names:
                        yield where, node.lineno, node.module, alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in STAGES and top != package:
                        yield where, node.lineno, alias.name, ""


def test_every_stage_declares_its_public_modules() -> None:
    for stage in STAGES:
        declared = importlib.import_module(stage).__all__
        assert declared == sorted(declared), stage
        assert set(declared) <= _submodules(stage), (stage, set(declared) - _submodules(stage))


def test_other_stages_and_the_shell_use_only_the_declared_surface() -> None:
    offered = {stage: set(importlib.import_module(stage).__all__) for stage in STAGES}
    wrong = []
    for package in IMPORTERS:
        for where, line, module, name in _imports(package):
            parts = module.split(".")
            target = parts[1] if len(parts) > 1 else name
            if target not in offered[parts[0]]:
                wrong.append(f"{where}:{line}: {module} is internal to {parts[0]}")
            if name.startswith("_"):
                wrong.append(f"{where}:{line}: {module}.{name} is private")
    assert not wrong, wrong
