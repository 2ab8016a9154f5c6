"""The admin page lists each kiosk's scanner and printer as its device agent reports
them, live: a printer out of paper is shown as such, and an agent that goes away is
shown as not connected. The agent is played by the typed client (its SANE and CUPS
side is tested in ``tests/agent`` and ``test_documents_pages.py``)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser.parties import assert_accessible, assert_no_page_errors, open_admin
from tests.support import JsonClient

pytestmark = pytest.mark.browser

PAPER_OUT = {
    "type": "device.health",
    "scanner": {"present": True, "ready": True, "state": "idle"},
    "printer": {
        "present": True,
        "ready": False,
        "state": "stopped",
        "media": "empty",
        "detail": "media-empty-error",
    },
    "last_error": "Plus de papier dans le bac 1",
}


async def test_admin_sees_each_kiosks_devices_live(browser: Browser, server: Any) -> None:
    admin = await open_admin(browser, server)
    page = admin.page
    # Before its agent connects, the kiosk is listed with its devices unreachable.
    await expect(page.get_by_test_id("device-row-kiosk-1")).to_have_attribute(
        "data-online", "false"
    )
    await expect(page.get_by_test_id("device-row-kiosk-1")).to_contain_text("Mairie de Test")

    device = await JsonClient.connect(server.ws_url)
    try:
        welcome = await device.hello(server.token("device", "kiosk-1"))
        assert welcome["type"] == "welcome", welcome
        assert (await device.request(PAPER_OUT))["type"] == "ack"

        row = page.get_by_test_id("device-row-kiosk-1")
        await expect(row).to_be_visible(timeout=10_000)
        await expect(row).to_have_attribute("data-online", "true")
        printer = page.get_by_test_id("device-kiosk-1-printer")
        await expect(printer).to_have_attribute("data-level", "unavailable")
        await expect(printer).to_contain_text("plus de papier")
        await expect(page.get_by_test_id("device-kiosk-1-scanner")).to_have_attribute(
            "data-level", "ready"
        )
        await expect(row).to_contain_text("Plus de papier dans le bac 1")
        await assert_accessible(admin, "admin page with kiosk devices")
    finally:
        await device.close()

    # The agent went away: the kiosk's devices cannot be used until it comes back.
    await expect(page.get_by_test_id("device-row-kiosk-1")).to_have_attribute(
        "data-online", "false", timeout=10_000
    )
    await expect(page.get_by_test_id("device-kiosk-1-printer")).to_contain_text("non connectés")
    assert_no_page_errors(admin)
    await admin.close()
