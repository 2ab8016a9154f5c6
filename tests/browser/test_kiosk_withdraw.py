"""Withdrawing a document-sharing agreement from the kiosk's home screen, outside any
call: the agreement was given in an earlier call at another kiosk (played by typed
clients, the device agent included); the citizen types the code at this kiosk's page,
and from then on the code shares nothing.

Screenshots of the new screens, landscape (1280x800) and portrait (1080x1920), go to
``/tmp/shots/withdraw-*.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from tests.browser.parties import Party, assert_accessible, assert_no_page_errors, open_party
from tests.server.test_documents import Connect, Http, scanned_document
from tests.support import start_server, write_test_config

pytestmark = pytest.mark.browser

LANDSCAPE = {"width": 1280, "height": 800}
PORTRAIT = {"width": 1080, "height": 1920}
SHOT_DIR = Path("/tmp/shots")
WITHDRAWN = "Votre accord est retiré : vos documents ne seront plus montrés."
UNKNOWN = "Ce code n'existe pas ou a déjà été retiré. Vérifiez-le."
# A code of the right alphabet and length that no consent has.
NO_SUCH_CODE = "zzzz-zzzz"
NOT_CONNECTED = (
    "La borne n'est pas connectée : votre accord n'est pas encore retiré. "
    "Réessayez dans un instant."
)


async def consent_given_in_a_call(server: Any, connect: Connect) -> str:
    """A CAF call at kiosk-1 where a scan is accepted and the citizen agrees to share
    it, then hung up; the sharing code."""
    async with aiohttp.ClientSession() as session:
        kiosk, expert, _device, call, document = await scanned_document(
            connect, Http(server, session)
        )
    review = {"type": "case.review", "call": call, "document": document["id"]}
    assert (await expert.request({**review, "verdict": "accepted"}))["type"] == "ack"
    consented = await kiosk.request({"type": "case.consent", "call": call, "share": True})
    assert consented["type"] == "case.consented", consented
    await expert.request({"type": "call.hangup", "call": call})
    await kiosk.expect("call.ended", call=call)
    return str(consented["code"])


async def share_in_a_later_call(connect: Connect, code: str) -> dict[str, Any]:
    """A CPAM call at kiosk-3 answered by expert-2, where the citizen gives ``code``;
    the reply to ``case.share``."""
    expert = await connect("expert", "expert-2", services=["cpam"], partner="cpam", name="D")
    await expert.request({"type": "expert.status", "status": "available"})
    kiosk = await connect("kiosk", "kiosk-3")
    queued = await kiosk.request({"type": "call.request", "service": "cpam"})
    call = queued["call"]
    await expert.expect("call.offered", call=call)
    await expert.request({"type": "offer.accept", "call": call})
    await kiosk.expect("call.connected", call=call)
    return await kiosk.request({"type": "case.share", "call": call, "code": code})


@pytest.fixture
def shots() -> Path:
    SHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SHOT_DIR


async def shoot(page: Page, shots: Path, name: str) -> None:
    """The page as it is, landscape then portrait."""
    for orientation, size in (("landscape", LANDSCAPE), ("portrait", PORTRAIT)):
        await page.set_viewport_size(size)
        await page.screenshot(path=shots / f"withdraw-{name}-{orientation}.png")
    await page.set_viewport_size(LANDSCAPE)


async def open_withdrawal(kiosk: Party) -> None:
    page = kiosk.page
    await page.get_by_test_id("withdraw-open").click()
    await kiosk.state_is("withdraw")
    # Keyboard and screen-reader users land on the screen's title.
    await expect(page.get_by_test_id("withdraw-title")).to_be_focused()


async def test_an_agreement_is_withdrawn_at_another_kiosk_outside_any_call(
    browser: Browser, server: Any, connect: Connect, shots: Path
) -> None:
    code = await consent_given_in_a_call(server, connect)

    # Days later, at another kiosk, with no call.
    kiosk = await open_party(
        browser, f"{server.url}/kiosk", server.token("kiosk", "kiosk-2"), LANDSCAPE
    )
    page = kiosk.page
    missing: list[str] = []

    def keep_missing(message: ConsoleMessage) -> None:
        if "missing string" in message.text:
            missing.append(message.text)

    page.on("console", keep_missing)
    await expect(page.get_by_test_id("service-caf")).to_be_visible()
    opener = page.get_by_test_id("withdraw-open")
    await expect(opener).to_have_text("Retirer un accord de partage de documents")
    await shoot(page, shots, "home")

    await open_withdrawal(kiosk)
    field = page.get_by_test_id("withdraw-input")
    await expect(page.get_by_label("Votre code de partage")).to_be_visible()
    await expect(field).to_have_css("text-transform", "uppercase")
    await assert_accessible(kiosk, "kiosk's withdrawal screen")
    await shoot(page, shots, "entry")

    # Nothing typed, then a code that no consent has: said by the field, which keeps
    # what was typed so that it can be corrected.
    await page.get_by_test_id("withdraw-submit").click()
    error = page.get_by_test_id("withdraw-error")
    await expect(error).to_have_text("Tapez d'abord votre code de partage.")
    await field.fill(NO_SUCH_CODE)
    await expect(error).to_be_empty()
    await page.get_by_test_id("withdraw-submit").click()
    await expect(error).to_have_text(UNKNOWN)
    await expect(error).to_have_attribute("role", "alert")
    await expect(field).to_be_focused()
    await expect(field).to_have_value(NO_SUCH_CODE)
    await expect(field).to_have_attribute("aria-invalid", "true")
    await kiosk.state_is("withdraw")
    await assert_accessible(kiosk, "kiosk's withdrawal screen with an unknown code")
    await shoot(page, shots, "unknown")

    # The real code, in lower case and without a dash.
    await field.fill(code.lower())
    await field.press("Enter")
    await kiosk.state_is("withdrawn")
    await expect(page.get_by_test_id("withdrawn-message")).to_have_text(WITHDRAWN)
    await expect(page.get_by_test_id("withdrawn-title")).to_be_focused()
    await expect(page.locator("#live-region")).to_have_text(WITHDRAWN)
    await expect(page.locator("#withdrawn-countdown")).to_contain_text("Retour à l'accueil dans")
    await assert_accessible(kiosk, "kiosk's agreement withdrawn")
    await shoot(page, shots, "done")

    # A touch anywhere gives the kiosk back, with nothing of the code left.
    await page.get_by_test_id("withdrawn-message").click()
    await kiosk.state_is("home")
    await expect(field).to_have_value("")

    # The same screens in English; Back goes home, in French for the next visitor.
    await page.get_by_test_id("language-button").click()
    await expect(opener).to_have_text("Withdraw a document-sharing agreement")
    await open_withdrawal(kiosk)
    await expect(page.get_by_test_id("withdraw-title")).to_have_text(
        "Withdraw a document-sharing agreement"
    )
    await field.fill(NO_SUCH_CODE)
    await page.get_by_test_id("withdraw-submit").click()
    await expect(error).to_have_text(
        "This code does not exist or has already been withdrawn. Check it."
    )
    await page.get_by_test_id("withdraw-back").click()
    await kiosk.state_is("home")
    await expect(opener).to_have_text("Retirer un accord de partage de documents")

    # The withdrawn code shares nothing in a later call of another partner.
    refused = await share_in_a_later_call(connect, code)
    assert refused["type"] == "error" and refused["code"] == "unknown_share_code", refused
    assert not missing, missing
    assert_no_page_errors(kiosk)


async def test_a_kiosk_cut_from_the_server_says_the_agreement_is_not_withdrawn_yet(
    browser: Browser, tmp_path: Path
) -> None:
    # A server of its own, stopped halfway.
    running = await start_server(write_test_config(tmp_path))
    try:
        kiosk = await open_party(
            browser, f"{running.url}/kiosk", running.token("kiosk", "kiosk-2"), LANDSCAPE
        )
        page = kiosk.page
        await expect(page.get_by_test_id("service-caf")).to_be_visible()
        await open_withdrawal(kiosk)
        field = page.get_by_test_id("withdraw-input")
        await field.fill("abcd efgh")
    finally:
        await running.stop()
    await expect(page.locator("#connection-banner")).to_be_visible()
    await page.get_by_test_id("withdraw-submit").click()
    await expect(page.get_by_test_id("withdraw-error")).to_have_text(NOT_CONNECTED)
    # Not the code's fault: the field keeps it, to try again once the kiosk is back.
    await expect(field).to_have_value("abcd efgh")
    await expect(field).to_have_attribute("aria-invalid", "false")
    await kiosk.state_is("withdraw")
    # The browser says so about the socket it cannot reopen; the page itself does not.
    assert all("WebSocket connection" in error for error in kiosk.errors), kiosk.errors
