"""The workbench in a real headless Chromium: sign in, trace a generated case under both
rules (the search form driven by the keyboard alone for one of them) and see the contacts
the API returns, export CSV and check its rows, set a contact's follow-up status, propose
an exposure site and approve it as a second user, see it on the public page, sign out.
A failure leaves a screenshot (`browser_kit.screenshot_on_failure`)."""

from __future__ import annotations

import csv
import io
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_kit import (
    chromium,
    click_to_next_page,
    console_errors,
    screenshot_on_failure,
    serve,
    wait_until,
)
from workbench_kit import Env, make_env

from sinks.clickhouse_settings import ClickHouseSettings
from tracing.models import iso_utc

pytestmark = pytest.mark.skipif(
    not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@pytest.fixture
def env(clickhouse_settings: ClickHouseSettings) -> Iterator[Env]:
    yield from make_env(clickhouse_settings)


def api_contacts(base: str, env: Env, rule: str) -> set[str]:
    query = urllib.parse.urlencode(
        {"from": iso_utc(env.from_ms), "to": iso_utc(env.to_ms), "rule": rule, "limit": "10000"}
    )
    request = urllib.request.Request(
        f"{base}/v1/trace/{urllib.parse.quote(env.case)}?{query}",
        headers={"Authorization": "Bearer tok-tracer"},
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return {c["person_id"] for c in json.load(r)["contacts"]}


def shown_contacts(driver: Any) -> set[str]:
    """The person ids of the contacts on every page of the answer shown."""
    from selenium.webdriver.common.by import By

    seen: set[str] = set()
    while True:
        seen |= {e.text for e in driver.find_elements(By.CSS_SELECTOR, "span.pid.person")}
        nxt = driver.find_elements(By.CSS_SELECTOR, 'a[rel="next"]')
        if not nxt:
            return seen
        click_to_next_page(nxt[0], "the next page of contacts")


def sign_in(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/trace")
    assert "/login" in driver.current_url  # no session: sent to sign in
    field = driver.find_element(By.ID, "token")
    assert driver.switch_to.active_element == field  # focused for the keyboard
    field.send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "/login" not in driver.current_url, "the sign-in")


def sign_out(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "logout").click()
    wait_until(lambda: "/login" in driver.current_url, "the sign-out")


def keyboard_search(driver: Any, person: str, rule_steps: int) -> None:
    """Fill the search form with the keyboard alone: the person field has the focus, Tab
    to the rule, arrows to choose it, Tab to the button, Enter."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def active_id() -> str:
        return str(driver.switch_to.active_element.get_attribute("id"))

    assert active_id() == "person"
    keys = ActionChains(driver)
    keys.send_keys(person).perform()
    for _ in range(40):
        if active_id() == "rule":
            break
        ActionChains(driver).send_keys(Keys.TAB).perform()
    assert active_id() == "rule"
    for _ in range(rule_steps):
        ActionChains(driver).send_keys(Keys.ARROW_DOWN).perform()
    for _ in range(40):
        if active_id() == "go":
            break
        ActionChains(driver).send_keys(Keys.TAB).perform()
    assert active_id() == "go"
    ActionChains(driver).send_keys(Keys.ENTER).perform()


def test_a_tracers_day_in_the_browser(env: Env, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with serve(env.app) as base, chromium(downloads) as driver:
        with screenshot_on_failure(driver, "workbench-tracer", tmp_path):
            sign_in(driver, base, "tok-tracer")
            # the period: the generated days (typed as the form's local values)
            driver.get(f"{base}/trace?" + urllib.parse.urlencode(env.period))
            keyboard_search(driver, env.case, rule_steps=1)  # scan-window -> overlap
            wait_until(lambda: "person=" in driver.current_url, "the answer")
            assert "rule=overlap" in driver.current_url
            if os.environ.get("SCANTRACE_DOCS_SCREENSHOT"):  # the README's picture
                driver.set_window_size(1400, 2100)
                driver.save_screenshot(os.environ["SCANTRACE_DOCS_SCREENSHOT"])
                driver.set_window_size(1400, 1000)
            assert shown_contacts(driver) == api_contacts(base, env, "overlap")
            driver.get(
                f"{base}/trace?" + urllib.parse.urlencode({"person": env.case, **env.period})
            )
            assert shown_contacts(driver) == api_contacts(base, env, "scan-window")

            # CSV export: the rows are the contacts, Vietnamese headers
            driver.find_element(By.ID, "export-csv").click()
            done = wait_until(
                lambda: [p for p in downloads.glob("*.csv") if p.stat().st_size], "the download"
            )
            table = list(csv.reader(io.StringIO(done[0].read_text(encoding="utf-8-sig"))))
            assert table[0][0] == "Mã người"
            assert {row[0] for row in table[1:]} == api_contacts(base, env, "scan-window")

            # follow-up: a case record, then a contact's status
            date = driver.find_element(By.ID, "confirmed_on")
            driver.execute_script("arguments[0].value = '2026-12-01'", date)
            driver.find_element(By.CSS_SELECTOR, "#case-create button").click()
            wait_until(lambda: driver.find_elements(By.ID, "case-record"), "the case record")
            row = driver.find_elements(By.CSS_SELECTOR, "tr[data-person]")[0]
            person = row.get_attribute("data-person")
            Select(row.find_element(By.NAME, "status")).select_by_value("called")
            click_to_next_page(
                row.find_element(By.CSS_SELECTOR, "button[type=submit]"), "the status saved"
            )
            row = wait_until(
                lambda: driver.find_elements(By.CSS_SELECTOR, f'tr[data-person="{person}"]'),
                "the page after the change",
            )[0]
            chosen = Select(row.find_element(By.NAME, "status")).first_selected_option
            assert chosen.get_attribute("value") == "called"
            assert "Nguyen Van A" in row.text

            # the premises of the first visit: registry, scans per hour, the case's map
            link = driver.find_element(By.CSS_SELECTOR, "#timeline tbody a")
            back = driver.current_url
            link.click()
            wait_until(lambda: "/premises/" in driver.current_url, "the premises page")
            assert driver.find_elements(By.CSS_SELECTOR, ".map svg .dot.current")
            assert driver.find_elements(By.CSS_SELECTOR, "#visitors tbody tr")
            assert driver.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
            driver.get(back)
            assert console_errors(driver) == []  # no CSP violation, no script error

            # propose the first visit as an exposure site
            first = driver.find_element(By.ID, "visit-1")
            premises_id = str(first.get_attribute("value")).split("|")[0]
            first.click()
            driver.find_element(By.ID, "propose-sites").click()
            wait_until(lambda: driver.current_url.endswith("/sites"), "the proposals")
            assert "Chờ duyệt" in driver.page_source
            assert not driver.find_elements(By.CSS_SELECTOR, "button.approve")  # not mine to
            sign_out(driver)

        with screenshot_on_failure(driver, "workbench-supervisor", tmp_path):
            sign_in(driver, base, "tok-sup1")
            driver.get(f"{base}/sites")
            driver.find_element(By.CSS_SELECTOR, "button.approve").click()
            wait_until(lambda: "Đã công bố" in driver.page_source, "the approval")
            driver.get(f"{base}/exposure-sites")
            rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-premises="{premises_id}"]')
            assert rows and env.province.premises[premises_id].name in rows[0].text
            assert env.case not in driver.page_source
            assert not driver.find_elements(By.ID, "logout")  # public: the same for all
            driver.get(f"{base}/sites")
            sign_out(driver)
            driver.get(f"{base}/cases")
            assert "/login" in driver.current_url
