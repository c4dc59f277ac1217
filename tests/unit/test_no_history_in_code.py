"""The code says what is: no comment or docstring of the packages tells its history, and no
file of the project points to a document outside the repository.

History lives in the commit messages and measured figures in bench/RESULTS.md (a comment
may cite a section of it); design notes live in docs/. Caught here: a numbered work
period ("session 7"), a before -> after timing ("128 -> 100 ms", "42 -> 20 s"), an issue
number as narration, a commit hash, and the names of the design notes kept outside the
repository.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "sinks", "tracing", "scantrace")

OUTSIDE_DOCS = re.compile(r"\b(DESIGN|STYLE|SERVICES|PERFORMANCE)\.md\b")
HISTORY = {
    "a work period": re.compile(r"\b[Ss]ession \d"),
    "a before -> after timing": re.compile(
        r"\d(\.\d+)? ?(ms|s|us|µs) ?(->|→) ?\d|\d ?(->|→) ?\d+(\.\d+)? ?(ms|s|us|µs)\b"
    ),
    "an issue number": re.compile(r"\b[Ii]ssue #?\d"),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),
    "a document outside the repository": OUTSIDE_DOCS,
}
# Text files of the project that could name a document (the packages are walked above).
TEXT_SUFFIXES = frozenset({".py", ".md", ".xml", ".yml", ".yaml", ".sql", ".toml", ".txt"})
TEXT_DIRS = ("bench", "deploy", "docs", "tests", *PACKAGES)
TEXT_FILES = ("README.md", "Makefile", "Dockerfile", "pyproject.toml", "docker-compose.yml")


def comments_and_docstrings(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every comment and every line of every docstring."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                first = node.body[0].lineno
                for i, line in enumerate(doc.splitlines()):
                    yield first + i, line


def findings(source: str) -> list[str]:
    return [
        f"{line}: {what}: {text.strip()[:100]}"
        for line, text in comments_and_docstrings(source)
        for what, pattern in HISTORY.items()
        if pattern.search(text)
    ]


def package_files() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_no_comment_or_docstring_tells_history() -> None:
    found = {
        name: hits
        for name, path in package_files()
        if (hits := findings(path.read_text(encoding="utf-8")))
    }
    assert not found, f"say why, not what was (cite bench/RESULTS.md for figures): {found}"


def test_no_file_names_a_document_outside_the_repository() -> None:
    paths = [ROOT / name for name in TEXT_FILES if (ROOT / name).is_file()]
    for folder in TEXT_DIRS:
        paths += [p for p in (ROOT / folder).rglob("*") if p.suffix in TEXT_SUFFIXES]
    this = Path(__file__).resolve()
    named = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in paths
        if path.resolve() != this
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if OUTSIDE_DOCS.search(line)
    ]
    assert not named, f"point to docs/ or bench/RESULTS.md instead: {named}"


def test_the_patterns_catch_what_they_are_for() -> None:
    source = '''"""Made faster in session 7."""
# co-visitors 128 -> 100 ms (bench/RESULTS.md)
# 42 -> 20 s
# the layout of issue 4; see DESIGN.md
x = 1  # query of 06d5110
# a frame of 1,000 scans; retries 0.5 s to 30 s; rows -> columns
'''
    hits = findings(source)
    assert [h.split(":")[0] for h in hits] == ["2", "3", "4", "4", "5", "1"], hits
