"""The three web pages, driven in headless Chromium against the real server (one node,
or several sharing a private Redis).

Each party (kiosk, expert, admin) gets its own browser context, as it would be
a different machine. Media come from Chromium's fake camera and microphone.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser.parties import (
    BENEFICIARY,
    assert_accessible,
    assert_no_page_errors,
    open_admin,
    open_expert,
    open_kiosk,
    open_party,
    queue_a_call,
)

pytestmark = pytest.mark.browser


async def test_call_from_kiosk_to_expert_with_media_and_wrap_up(
    browser: Browser, server: Any
) -> None:
    expert = await open_expert(browser, server)
    kiosk = await open_kiosk(browser, server)

    await queue_a_call(kiosk)
    await expect(kiosk.page.get_by_test_id("position")).to_have_text(re.compile(r"1er"))
    await expect(kiosk.page.get_by_test_id("wait-range")).not_to_be_empty()

    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    ring = expert.page.locator("[data-screen=offered]")
    await expect(ring).to_contain_text(BENEFICIARY)
    await expect(expert.page.locator("#offer-kiosk")).not_to_be_empty()
    await expect(expert.page.locator("#offer-countdown")).to_have_text(re.compile(r"\d+ s"))
    offered_call = await expert.page.evaluate("window.visio.call")
    assert offered_call == await kiosk.page.evaluate("window.visio.call")

    await expert.page.get_by_test_id("accept-button").click()
    await expert.state_is("in_call")
    await kiosk.state_is("in_call")
    await expect(kiosk.page.locator("#call-peer")).to_contain_text("Camille Expert")

    kiosk_stats = await kiosk.media_flows()
    expert_stats = await expert.media_flows()
    await assert_accessible(kiosk, "kiosk in call")
    await assert_accessible(expert, "expert in call")
    assert kiosk_stats["framesDecoded"] > 0 and kiosk_stats["audioPacketsReceived"] > 0
    assert expert_stats["framesDecoded"] > 0 and expert_stats["audioPacketsReceived"] > 0

    await expert.page.get_by_test_id("hangup-button").click()
    await expert.state_is("wrap_up")
    await kiosk.state_is("ended")
    assert await kiosk.page.evaluate("window.visio.call") is None
    await assert_accessible(expert, "expert wrap-up")
    await assert_accessible(kiosk, "kiosk thank-you screen")

    await expert.page.get_by_test_id("wrapup-reason-0").check()
    await expert.page.get_by_test_id("wrapup-submit").click()
    await expert.state_is("idle")
    assert await expert.page.evaluate("window.visio.call") is None
    assert await expert.page.evaluate("window.visio.stats()") == {
        "framesDecoded": 0,
        "audioPacketsReceived": 0,
    }
    # The thank-you screen gives the kiosk back to the next visitor by itself.
    await kiosk.state_is("home", within_ms=15_000)
    assert_no_page_errors(kiosk, expert)


async def test_pages_have_no_serious_accessibility_violation(browser: Browser, server: Any) -> None:
    expert = await open_expert(browser, server)
    await assert_accessible(expert, "expert console")

    kiosk = await open_kiosk(browser, server)
    await expect(kiosk.page.get_by_test_id("service-caf")).to_be_visible()
    await assert_accessible(kiosk, "kiosk home")
    await kiosk.page.get_by_test_id("service-caf").click()
    await kiosk.state_is("number")
    await assert_accessible(kiosk, "kiosk number entry")
    await kiosk.page.get_by_test_id("beneficiary-input").fill(BENEFICIARY)
    await kiosk.page.get_by_test_id("call-button").click()
    await kiosk.state_is("waiting")
    await assert_accessible(kiosk, "kiosk waiting")

    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    await assert_accessible(expert, "expert ring panel")

    admin = await open_admin(browser, server)
    await expect(admin.page.get_by_test_id("queue-row-caf")).to_be_visible()
    await assert_accessible(admin, "admin page")
    assert_no_page_errors(kiosk, expert, admin)


async def test_admin_sees_the_waiting_call_live(browser: Browser, server: Any) -> None:
    await open_expert(browser, server)
    admin = await open_admin(browser, server)
    await admin.state_is("live")
    row = admin.page.get_by_test_id("queue-row-caf")
    await expect(row.locator("td.waiting")).to_have_text("0")

    kiosk = await open_kiosk(browser, server)
    await queue_a_call(kiosk)

    await expect(row.locator("td.waiting")).to_have_text("1")
    oldest = row.locator("td.oldest")
    await expect(oldest).to_have_text(re.compile(r"^\d\d:\d\d$"))
    # Between two pushes the oldest wait keeps counting on the page.
    await expect(oldest).not_to_have_text("00:00", timeout=5_000)

    await kiosk.page.get_by_test_id("cancel-button").click()
    await kiosk.state_is("home")
    await expect(row.locator("td.waiting")).to_have_text("0")
    assert_no_page_errors(kiosk, admin)


async def test_kiosk_in_english(browser: Browser, server: Any) -> None:
    await open_expert(browser, server)
    kiosk = await open_kiosk(browser, server)
    page = kiosk.page
    language = page.get_by_test_id("language-button")
    await expect(language).to_have_text("English")

    await language.click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Talk to an adviser by video")
    await expect(language).to_have_text("Français")

    await queue_a_call(kiosk)
    await expect(page.get_by_test_id("position")).to_have_text("You are 1st in the queue")
    await expect(page.get_by_test_id("wait-range")).not_to_be_empty()
    await expect(page.get_by_test_id("cancel-button")).to_have_text("Leave the queue")

    # Leaving the queue hands the kiosk to the next visitor, in French.
    await page.get_by_test_id("cancel-button").click()
    await kiosk.state_is("home")
    await expect(page.locator("html")).to_have_attribute("lang", "fr")
    assert_no_page_errors(kiosk)


async def test_kiosk_asks_for_a_token_until_it_has_a_good_one(
    browser: Browser, server: Any
) -> None:
    kiosk = await open_party(browser, f"{server.url}/kiosk", None)
    page = kiosk.page
    await kiosk.state_is("provisioning")

    await page.get_by_test_id("token-input").fill("not-a-token")
    await page.get_by_test_id("token-save").click()
    await kiosk.state_is("provisioning")
    await expect(page.locator("[data-role=token-error]")).to_contain_text("refusé")

    await page.get_by_test_id("token-input").fill(server.token("kiosk", "kiosk-1"))
    await page.get_by_test_id("token-save").click()
    await expect(page.get_by_test_id("service-caf")).to_be_visible()
    await kiosk.state_is("home")
    assert_no_page_errors(kiosk)


async def test_kiosk_reload_resumes_its_call_waiting_then_connected(
    browser: Browser, server: Any
) -> None:
    expert = await open_expert(browser, server)
    kiosk = await open_kiosk(browser, server)
    await queue_a_call(kiosk)
    call = await kiosk.page.evaluate("window.visio.call")

    await kiosk.page.reload()
    await kiosk.state_is("waiting")
    assert await kiosk.page.evaluate("window.visio.call") == call
    await expect(kiosk.page.get_by_test_id("position")).to_have_text(re.compile(r"1er"))

    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    await expert.page.get_by_test_id("accept-button").click()
    await kiosk.state_is("in_call")
    await kiosk.media_flows()

    # A reloaded kiosk has lost its side of the media: the expert offers again.
    await kiosk.page.reload()
    await kiosk.state_is("in_call")
    assert await kiosk.page.evaluate("window.visio.call") == call
    await kiosk.media_flows()
    await expert.video_keeps_coming()
    assert await expert.page.evaluate("window.visio.state") == "in_call"

    await kiosk.page.get_by_test_id("hangup-button").click()
    await kiosk.state_is("ended")
    await expert.state_is("wrap_up")
    assert_no_page_errors(kiosk, expert)


async def test_kiosk_works_with_the_keyboard_alone(browser: Browser, server: Any) -> None:
    await open_expert(browser, server)
    kiosk = await open_kiosk(browser, server)
    page = kiosk.page
    await expect(page.get_by_test_id("service-caf")).to_be_visible()

    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.dataset.testid") == "service-caf":
            break
    else:
        pytest.fail("the CAF service cannot be reached with Tab")
    await page.keyboard.press("Enter")
    await kiosk.state_is("number")
    await expect(page.get_by_test_id("beneficiary-input")).to_be_focused()

    await page.keyboard.type("123")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert").filter(has_text="7 chiffres")).to_be_visible()
    await kiosk.state_is("number")

    await page.keyboard.type("4567")
    await page.keyboard.press("Enter")
    await kiosk.state_is("waiting")
    await expect(page.get_by_test_id("position")).to_have_text(re.compile(r"1er"))
    assert_no_page_errors(kiosk)


async def test_expert_transfers_the_call_to_another_service(browser: Browser, server: Any) -> None:
    token = server.token(
        "expert", "expert-1", services=["caf", "cpam"], name="Camille Expert", partner="caf"
    )
    expert = await open_party(browser, f"{server.url}/expert", token)
    cpam_token = server.token(
        "expert", "expert-2", services=["cpam"], name="Dominique Expert", partner="cpam"
    )
    cpam_expert = await open_party(browser, f"{server.url}/expert", cpam_token)
    await expect(cpam_expert.page.get_by_test_id("status-available")).to_be_visible()
    kiosk = await open_kiosk(browser, server)
    await queue_a_call(kiosk)

    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    await expert.page.get_by_test_id("accept-button").click()
    await kiosk.state_is("in_call")

    await expert.page.get_by_test_id("transfer-select").select_option("cpam")
    await expert.page.get_by_test_id("transfer-button").click()
    await kiosk.state_is("waiting")
    await expect(kiosk.page.locator("#waiting-notice")).to_contain_text("CPAM")
    await expect(kiosk.page.locator("#waiting-service")).to_contain_text("CPAM")
    assert await expert.page.evaluate("window.visio.state") in {"idle", "wrap_up"}

    await cpam_expert.page.get_by_test_id("status-available").click()
    await cpam_expert.state_is("offered")
    # The CPAM expert does not answer for CAF: the offer names where the call comes from.
    await expect(cpam_expert.page.locator("#offer-transferred")).to_have_text(
        re.compile("caf", re.IGNORECASE)
    )
    assert_no_page_errors(kiosk, expert, cpam_expert)


async def test_closed_service_says_when_it_opens(browser: Browser, server: Any) -> None:
    kiosk = await open_kiosk(browser, server)
    page = kiosk.page
    closed = page.get_by_test_id("service-ferme")
    await expect(closed).to_be_visible()
    assert await closed.get_attribute("aria-disabled") == "true"
    opening = re.compile(r"Ouvre (aujourd'hui|demain|\w+|le .+) à \d{1,2} h \d\d")
    await expect(closed).to_contain_text(opening)

    # Still reachable, so that a screen reader or a finger learns why it is grey.
    await closed.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#home-notice")).to_contain_text(opening)
    assert await page.evaluate("window.visio.state") == "home"
    assert_no_page_errors(kiosk)


# ---------------------------------------------------------------------- several nodes


async def test_kiosk_page_on_one_node_talks_with_a_console_on_another(
    browser: Browser, start_nodes: Any
) -> None:
    node_a, node_b = await start_nodes(2, kiosks=1, experts=1)
    expert = await open_party(browser, f"{node_b.url}/expert", node_b.token("expert", "expert-01"))
    await expect(expert.page.get_by_test_id("status-available")).to_be_visible()
    kiosk = await open_party(browser, f"{node_a.url}/kiosk", node_a.token("kiosk", "kiosk-001"))

    await queue_a_call(kiosk)
    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    await expert.page.get_by_test_id("accept-button").click()
    await expert.state_is("in_call")
    await kiosk.state_is("in_call")
    await expect(kiosk.page.locator("#call-peer")).to_contain_text("Expert 1")

    kiosk_stats = await kiosk.media_flows()
    expert_stats = await expert.media_flows()
    assert kiosk_stats["framesDecoded"] > 0 and expert_stats["framesDecoded"] > 0
    await expert.page.get_by_test_id("hangup-button").click()
    await kiosk.state_is("ended")
    assert_no_page_errors(kiosk, expert)


async def test_kiosk_page_says_try_again_while_redis_is_down_then_calls(
    browser: Browser, start_nodes: Any, redis_server: Any
) -> None:
    (node,) = await start_nodes(1, kiosks=1, experts=1)
    expert = await open_party(browser, f"{node.url}/expert", node.token("expert", "expert-01"))
    await expect(expert.page.get_by_test_id("status-available")).to_be_visible()
    kiosk = await open_party(browser, f"{node.url}/kiosk", node.token("kiosk", "kiosk-001"))
    page = kiosk.page
    await page.get_by_test_id("service-caf").click()
    await kiosk.state_is("number")
    await page.get_by_test_id("beneficiary-input").fill(BENEFICIARY)

    await redis_server.stop()
    await page.get_by_test_id("call-button").click()
    await expect(page.locator("#number-error")).to_contain_text(
        "momentanément indisponible", timeout=10_000
    )
    assert await page.evaluate("window.visio.state") == "number"

    await redis_server.start()
    # The citizen presses again, as the notice asks, until the node has Redis back.
    deadline = time.monotonic() + 20
    while await page.evaluate("window.visio.state") != "waiting":
        assert time.monotonic() < deadline, "the call was not taken once Redis was back"
        await page.get_by_test_id("call-button").click()
        await asyncio.sleep(1)
    await expect(page.get_by_test_id("position")).to_have_text(re.compile(r"1er"))
