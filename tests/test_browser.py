"""The status page in a real browser: Debian's Chromium driven by Playwright
(``executable_path``; Playwright's own browser download cannot work here).
Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from didban.web.app import WebContext, build_app
from store.backend import Backend
from store.sql_store import SqliteStore
from tests.conftest import ARTIFACTS, CHROMIUM
from tests.test_web import NAME_FA, history, web_config

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by scripts/test.sh")


@pytest.fixture
async def site(aiohttp_server: Any, db_path: Path) -> tuple[str, Path]:
    store = SqliteStore(db_path)
    history(store, "portal")
    history(store, "dispatch")
    store.close()
    server = await aiohttp_server(build_app(WebContext(web_config(), Backend(path=db_path))))
    return str(server.make_url("")).rstrip("/"), db_path


async def test_the_page_is_rtl_with_jalali_dates_and_switches_to_english(browser: Any, site: tuple[str, Path]) -> None:
    base, _ = site
    page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    await page.goto(f"{base}/a/agency")
    assert await page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    assert await page.get_attribute("html", "lang") == "fa"
    text = await page.inner_text("body")
    assert NAME_FA in text and re.search(r"۱۴[۰-۹]{2}/[۰-۹]{2}/[۰-۹]{2}", text)
    assert await page.evaluate("document.fonts.check('16px Vazirmatn')")
    await page.screenshot(path=str(ARTIFACTS / "status-page-fa.png"), full_page=True)
    await page.click("text=English")
    assert await page.evaluate("getComputedStyle(document.body).direction") == "ltr"
    assert "Availability this month" in await page.inner_text("body")
    await page.screenshot(path=str(ARTIFACTS / "status-page-en.png"), full_page=True)


async def test_a_day_bar_shows_its_downtime_on_keyboard_focus(browser: Any, site: tuple[str, Path]) -> None:
    base, _ = site
    page = await browser.new_page()
    await page.goto(f"{base}/a/agency?lang=en")
    bar = page.locator(".bar").last
    await bar.focus()
    tip = bar.locator(".tip")
    assert await tip.is_visible()
    assert "downtime 0" in await tip.inner_text()


async def test_a_simulated_outage_appears_on_the_page(browser: Any, site: tuple[str, Path]) -> None:
    base, db_path = site
    page = await browser.new_page()
    await page.goto(f"{base}/s/dispatch?lang=en")
    assert "No incidents" in await page.inner_text("#dispatch")
    import time

    from core.model import ProbeResult, Status
    from store.contract import Batch, OutageChange

    now = int(time.time() * 1000)
    store = SqliteStore(db_path)
    store.write(Batch(results=[ProbeResult("dispatch", "tabriz", now + k, Status.DOWN, 1.0, "timeout")
                               for k in (1, 2)],
                      changes=[OutageChange("dispatch", now + 1, opening=True, error="timeout")]))
    store.close()
    # The board is rebuilt in the background once it is 15 s old: the page shows the outage soon after.
    section = ""
    for _ in range(50):
        await page.wait_for_timeout(500)
        await page.reload()
        section = await page.inner_text("#dispatch")
        if "ongoing" in section:
            break
    assert "Down" in section and "ongoing" in section and re.search(r"OT-[2-9A-Z]{4}-[2-9A-Z]{4}", section)
    await page.screenshot(path=str(ARTIFACTS / "status-page-outage.png"), full_page=True)


async def test_the_fault_form_returns_a_tracking_code_and_the_lookup_shows_it(browser: Any,
                                                                               site: tuple[str, Path]) -> None:
    base, _ = site
    page = await browser.new_page()
    await page.goto(f"{base}/a/agency")
    await page.click("text=گزارش خرابی >> nth=0")
    await page.select_option("#service", "dispatch")
    await page.fill("#description", "صفحهٔ ارسال سند خطای ۵۰۰ می‌دهد")
    question = await page.inner_text("label[for=answer]")
    digits = question.translate(str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789"))
    a, b = (int(x) for x in re.findall(r"\d+", digits)[:2])
    await page.fill("#answer", str(a + b))
    await page.click("button[type=submit]")
    code = (await page.inner_text("#tracking-code")).strip()
    assert re.fullmatch(r"RC-[2-9A-Z]{4}-[2-9A-Z]{4}", code)
    await page.screenshot(path=str(ARTIFACTS / "fault-receipt.png"), full_page=True)
    lookup = await browser.new_page()
    await lookup.goto(f"{base}/receipts/{code}?lang=en")
    assert code in await lookup.inner_text("body") and "Filed" in await lookup.inner_text("#receipt-state")
