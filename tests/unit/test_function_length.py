"""No function of the packages is longer than a reader can hold: 120 lines at most.

A longer function is split into named steps. Exempt, each for the reason it names: data
written as one literal (a table or a document), which reads top to bottom whatever its
length.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "sinks", "tracing", "scantrace")
MAX_LINES = 120

# "path:function" -> why its length is not a reader's burden.
DATA = {
    "tracing/api/openapi.py:openapi_document": "the OpenAPI document as one literal",
}


def functions() -> Iterator[tuple[str, int]]:
    """("path:qualified name", lines) of every function and method of the packages."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            yield from _walk(ast.parse(path.read_text(encoding="utf-8")), relative, "")


def _walk(node: ast.AST, path: str, prefix: str) -> Iterator[tuple[str, int]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + child.name
            end = child.end_lineno if child.end_lineno is not None else child.lineno
            yield f"{path}:{name}", end - child.lineno + 1
            yield from _walk(child, path, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _walk(child, path, prefix + child.name + ".")
        else:
            yield from _walk(child, path, prefix)


def test_no_function_is_longer_than_120_lines() -> None:
    long = {name: n for name, n in functions() if n > MAX_LINES and name not in DATA}
    assert not long, f"split into named steps (at most {MAX_LINES} lines each): {long}"


def test_every_exemption_is_still_needed() -> None:
    lengths = dict(functions())
    stale = [name for name in DATA if lengths.get(name, 0) <= MAX_LINES]
    assert not stale, f"no longer needed (gone or short enough), remove from the lists: {stale}"


def test_the_walk_measures_methods_and_nested_functions() -> None:
    source = "class A:\n    def f(self):\n        def g():\n            pass\n        return g\n"
    tree = ast.parse(source)
    assert dict(_walk(tree, "m.py", "")) == {"m.py:A.f": 4, "m.py:A.f.g": 2}
