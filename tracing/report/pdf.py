"""The report as PDF: its HTML printed by headless Chromium (Debian's `chromium`).

A4 and the page numbers come from the page's own CSS (`@page` with a `@bottom-right`
margin box holding `counter(page)`, which Chromium prints), so Chromium's own header
and footer (a file URL and the date) are switched off. The tables repeat their header on
every page and never split a row. Chromium runs with a fresh profile in a temporary
folder, no network of its own, and is stopped if it does not finish in time.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from ingest.errors import TerminalError

TIMEOUT_S: Final = 180


class PdfError(TerminalError):
    """Chromium is missing or could not print the page."""


def chromium_argv(chromium: str, html: Path, pdf: Path, profile: Path) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # containers and CI runners have no user namespaces for it
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--no-pdf-header-footer",
        f"--print-to-pdf={pdf}",
        html.resolve().as_uri(),
    ]


def html_to_pdf(html: str, chromium: str = "/usr/bin/chromium") -> bytes:
    """Print `html` (self-contained: no network needed) to PDF bytes."""
    if not Path(chromium).exists():
        raise PdfError(
            f"the PDF report needs Chromium at {chromium} (Debian: apt-get install chromium; "
            "or set SCANTRACE_REPORT__CHROMIUM)"
        )
    with tempfile.TemporaryDirectory(prefix="scantrace-pdf-") as tmp:
        folder = Path(tmp)
        page, out = folder / "report.html", folder / "report.pdf"
        page.write_text(html, encoding="utf-8")
        argv = chromium_argv(chromium, page, out, folder / "profile")
        try:
            done = subprocess.run(  # a fixed argv, no shell
                argv,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                env={**os.environ, "HOME": str(folder)},
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not print the PDF within {TIMEOUT_S} s") from None
        if done.returncode != 0 or not out.exists():
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise PdfError(f"chromium failed ({done.returncode}): {tail[0][:300]}")
        return out.read_bytes()
