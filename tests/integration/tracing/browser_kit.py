"""A real headless Chromium (Debian's `chromium` driven through `chromium-driver` by
Selenium) against the workbench served on a free loopback port from a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web

from scantrace.services.process import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """The app on 127.0.0.1, its base URL; stopped (and its thread joined) afterwards."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    port = free_port()
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@contextlib.contextmanager
def chromium(downloads: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--lang=vi",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "intl.accept_languages": "vi,en",
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()  # stops chromedriver and the browser it started


@contextlib.contextmanager
def screenshot_on_failure(driver: Any, name: str, where: Path) -> Iterator[None]:
    """On any failure, a screenshot (and the page's HTML) beside the test's files, or in
    SCANTRACE_TEST_ARTIFACTS when set (CI keeps that folder)."""
    try:
        yield
    except BaseException:
        folder = Path(os.environ.get("SCANTRACE_TEST_ARTIFACTS", where))
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(folder / f"{name}.png"))
            (folder / f"{name}.html").write_text(driver.page_source, encoding="utf-8")
            print(f"screenshot: {folder / f'{name}.png'}")
        raise


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def click_to_next_page(element: Any, what: str) -> None:
    """Click `element` and wait until its page is replaced: the old page's elements
    found meanwhile would be stale by the time they are read."""
    from selenium.common.exceptions import StaleElementReferenceException

    def gone() -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        return False

    element.click()
    wait_until(gone, what)


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (a CSP violation is one)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
