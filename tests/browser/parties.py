"""What the page tests share: a party (one page in its own browser context, as on its
own machine), how each page is opened with its token, and the accessibility check."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, ConsoleMessage, Page, WebSocket, expect

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BENEFICIARY = "1234567"
MEDIA_TIMEOUT_S = 30
BLOCKING_IMPACTS = {"serious", "critical"}
CONSOLE_VIEWPORT = {"width": 1280, "height": 900}


class Party:
    """One page in its own browser context, with the errors it threw or logged and
    the WebSocket frames it received (to check what the server never sent it)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.frames_received: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self.keep_error)
        page.on("websocket", self.watch_socket)

    def watch_socket(self, socket: WebSocket) -> None:
        socket.on("framereceived", self.keep_frame)

    def keep_frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.frames_received.append(payload)

    def keep_error(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    async def close(self) -> None:
        await self.page.context.close()

    async def state_is(self, state: str, within_ms: float = 10_000) -> None:
        await self.page.wait_for_function(
            "state => window.visio && window.visio.state === state", arg=state, timeout=within_ms
        )

    async def media_flows(self) -> dict[str, int]:
        """Wait until remote video frames are decoded and audio packets arrive."""
        deadline = time.monotonic() + MEDIA_TIMEOUT_S
        while True:
            stats: dict[str, int] = await self.page.evaluate("window.visio.stats()")
            if stats["framesDecoded"] > 0 and stats["audioPacketsReceived"] > 0:
                return stats
            assert time.monotonic() < deadline, f"no media after {MEDIA_TIMEOUT_S} s: {stats}"
            await asyncio.sleep(0.25)

    async def video_keeps_coming(self) -> None:
        """Wait until more remote frames are decoded than a moment ago."""
        deadline = time.monotonic() + MEDIA_TIMEOUT_S
        before = await self.page.evaluate("window.visio.stats()")
        while True:
            await asyncio.sleep(1)
            now = await self.page.evaluate("window.visio.stats()")
            if now["framesDecoded"] > before["framesDecoded"]:
                return
            assert time.monotonic() < deadline, f"video stopped: {before} then {now}"
            before = now


async def open_party(
    browser: Browser, url: str, token: str | None, viewport: dict[str, int] | None = None
) -> Party:
    context = await browser.new_context(viewport=viewport or CONSOLE_VIEWPORT)
    if token is not None:
        # Each page keeps its token under its own key: /kiosk -> visio.token.kiosk.
        key = f"visio.token.{url.rstrip('/').rsplit('/', 1)[-1]}"
        await context.add_init_script(
            f"localStorage.setItem({json.dumps(key)}, {json.dumps(token)})"
        )
    party = Party(await context.new_page())
    await party.page.goto(url)
    return party


async def open_kiosk(
    browser: Browser, server: Any, viewport: dict[str, int] | None = None
) -> Party:
    return await open_party(
        browser, f"{server.url}/kiosk", server.token("kiosk", "kiosk-1"), viewport
    )


async def open_expert(
    browser: Browser, server: Any, viewport: dict[str, int] | None = None
) -> Party:
    token = server.token(
        "expert", "expert-1", services=["caf"], name="Camille Expert", partner="caf"
    )
    expert = await open_party(browser, f"{server.url}/expert", token, viewport)
    # The status buttons appear with the welcome: the expert is signed in (on break),
    # so a call to its service waits in the queue instead of being refused.
    await expect(expert.page.get_by_test_id("status-available")).to_be_visible()
    return expert


async def open_admin(browser: Browser, server: Any) -> Party:
    return await open_party(browser, f"{server.url}/admin", server.token("admin", "admin-1"))


async def queue_a_call(kiosk: Party) -> None:
    page = kiosk.page
    await page.get_by_test_id("service-caf").click()
    await kiosk.state_is("number")
    await page.get_by_test_id("beneficiary-input").fill(BENEFICIARY)
    await page.get_by_test_id("call-button").click()
    await kiosk.state_is("waiting")


async def answer_call(kiosk: Party, expert: Party) -> str:
    """The kiosk's queued call is answered by the expert (signed in, on a break); both
    pages are then in the call, whose id is returned."""
    await expert.page.get_by_test_id("status-available").click()
    await expert.state_is("offered")
    await expert.page.get_by_test_id("accept-button").click()
    await expert.state_is("in_call")
    await kiosk.state_is("in_call")
    call: str = await kiosk.page.evaluate("window.visio.call")
    assert call and call == await expert.page.evaluate("window.visio.call")
    return call


async def assert_accessible(party: Party, where: str) -> None:
    results = await Axe().run(party.page)
    blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"{where}:\n{results.generate_report()}"


def assert_no_page_errors(*parties: Party) -> None:
    for party in parties:
        assert not party.errors, party.errors
