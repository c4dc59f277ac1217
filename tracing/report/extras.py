"""The optional extra `report`: matplotlib draws the HTML report's charts, openpyxl writes
xlsx. CSV and JSON need neither. A missing one fails with the exact install command."""

from __future__ import annotations

import importlib
from typing import Final

from ingest.errors import TerminalError

INSTALL_HINT: Final = "pip install 'scantrace[report]'"
NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "html": ("matplotlib",),
    "pdf": ("matplotlib",),  # and Chromium, checked when printing
    "xlsx": ("openpyxl",),
    "csv": (),
    "json": (),
}


class MissingExtra(TerminalError):
    """A format needs a package of the `report` extra that is not installed."""


def require(fmt: str) -> None:
    """Raise `MissingExtra` (with the install command) unless `fmt` can be written."""
    missing = []
    for module in NEEDS[fmt]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(
            f"the {fmt} report needs {', '.join(missing)} (the optional extra `report`): "
            f"{INSTALL_HINT}"
        )
