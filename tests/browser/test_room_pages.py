"""Calls as rooms, on the real pages in headless Chromium: the kiosk, the expert's
console, the interpreter's console and the supervisor's page in one call.

Each party has its own browser context (its own machine, camera and microphone).
Four Chromium pages and up to six peer connections are a lot for two cores: each test
builds its call once and checks several things on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.browser.parties import (
    MEDIA_TIMEOUT_S,
    Party,
    assert_accessible,
    assert_no_page_errors,
    open_expert,
    open_kiosk,
    open_party,
    queue_a_call,
)

pytestmark = pytest.mark.browser

KIOSK, EXPERT, INTERPRETER, SUPERVISOR = (
    "kiosk:kiosk-1",
    "expert:expert-1",
    "interpreter:interp-1",
    "supervisor:super-caf",
)
# The kiosk's screen: what a citizen in the booth sees, without scrolling.
KIOSK_SCREEN = {"width": 1280, "height": 800}
# media.kiosk_uplink_kbps, the default the test configuration keeps.
UPLINK_KBPS = 512
# Below this, speech over Opus stops being understandable: audio is served first.
AUDIO_FLOOR_KBPS = 16
CAPTION_MIN_PX = 28


@dataclass
class Room:
    kiosk: Party
    expert: Party
    interpreter: Party
    call: str

    @property
    def parties(self) -> tuple[Party, Party, Party]:
        return (self.kiosk, self.expert, self.interpreter)


async def open_interpreter(browser: Browser, server: Any) -> Party:
    token = server.token(
        "interpreter",
        "interp-1",
        services=["interpretes"],
        languages=["lsf", "fr"],
        name="Léa Interprète",
        partner="interpretes",
    )
    interpreter = await open_party(browser, f"{server.url}/interpreter", token)
    await expect(interpreter.page.get_by_test_id("status-available")).to_be_visible()
    return interpreter


async def set_available(party: Party) -> None:
    button = party.page.get_by_test_id("status-available")
    await button.click()
    await expect(button).to_have_attribute("aria-pressed", "true")


async def two_party_call(browser: Browser, server: Any) -> tuple[Party, Party, Party, str]:
    """The interpreter's console signed in (on break); kiosk-1 calls CAF from a
    1280x800 screen and expert-1 answers from its console."""
    expert = await open_expert(browser, server)
    interpreter = await open_interpreter(browser, server)
    kiosk = await open_kiosk(browser, server, KIOSK_SCREEN)
    await queue_a_call(kiosk)
    await set_available(expert)
    await expert.state_is("offered")
    await expert.page.get_by_test_id("accept-button").click()
    await expert.state_is("in_call")
    await kiosk.state_is("in_call")
    call = await kiosk.page.evaluate("window.visio.call")
    assert call and call == await expert.page.evaluate("window.visio.call")
    return kiosk, expert, interpreter, call


async def ask_for_interpreter(expert: Party, language: str) -> None:
    """The expert asks from the console's own controls."""
    select = expert.page.get_by_test_id("interpreter-language")
    await expect(select).to_be_visible()
    await select.select_option(language)
    await expert.page.get_by_test_id("interpreter-request").click()


async def interpreter_accepts(room: Room) -> None:
    interpreter = room.interpreter
    await interpreter.state_is("offered")
    # The ring says which call the interpreter is asked to join, and in what language.
    await expect(interpreter.page.locator("#offer-joins")).to_contain_text("CAF")
    await expect(interpreter.page.locator("#offer-language")).not_to_be_empty()
    await interpreter.page.get_by_test_id("accept-button").click()
    await interpreter.state_is("in_call")
    assert await interpreter.page.evaluate("window.visio.call") == room.call
    for party in (room.kiosk, room.expert):
        await expect(party.page.get_by_test_id("interpreter-status")).to_have_attribute(
            "data-state", "joined"
        )


async def three_party_call(browser: Browser, server: Any) -> Room:
    """kiosk-1 and expert-1 in a CAF call; interp-1, available, joins it in LSF at the
    expert's request."""
    kiosk, expert, interpreter, call = await two_party_call(browser, server)
    room = Room(kiosk, expert, interpreter, call)
    await set_available(interpreter)
    await ask_for_interpreter(expert, "lsf")
    await interpreter_accepts(room)
    return room


TILE_PLAYS = """key => {
  const tile = document.querySelector(`#call-stage [data-participant="${key}"]`);
  return Boolean(tile) && tile.dataset.connection === "connected"
    && tile.dataset.video === "playing"
    && Number(tile.dataset.framesDecoded) > 0 && Number(tile.dataset.audioPackets) > 0;
}"""
TILES = (
    """() => [...document.querySelectorAll("#call-stage .tile")].map(tile => ({...tile.dataset}))"""
)


async def tiles_play(party: Party, *keys: str, sends: bool = True) -> None:
    """Each of these participants' tiles shows moving video, and its audio arrives;
    a page that sends (all but the supervisor's) shows its own picture too."""
    for key in keys:
        try:
            await party.page.wait_for_function(
                TILE_PLAYS, arg=key, timeout=MEDIA_TIMEOUT_S * 1000, polling=250
            )
        except PlaywrightTimeout:
            tiles = await party.page.evaluate(TILES)
            pytest.fail(f"{key} not playing on {party.page.url}: {json.dumps(tiles)}")
    by_peer = await party.page.evaluate("window.visio.statsByPeer()")
    for key in keys:
        assert by_peer[key]["framesDecoded"] > 0, by_peer
        assert by_peer[key]["audioPacketsReceived"] > 0, by_peer
    own = party.page.get_by_test_id("tile-self")
    if sends:
        await expect(own).to_be_visible()
    else:
        await expect(own).to_have_count(0)


BUDGET_APPLIED = """async peers => {
  const budget = await window.visio.budget();
  if (!budget || !budget.plan || budget.plan.connections !== peers.length) return false;
  return peers.every(key => {
    const applied = budget.peers[key];
    return applied && applied.audio_kbps === budget.plan.audio_kbps
      && applied.video_kbps === budget.plan.video_kbps;
  }) && Object.keys(budget.peers).length === peers.length;
}"""


async def kiosk_budget(kiosk: Party, *peers: str) -> dict[str, Any]:
    """The kiosk's sending bitrates once applied to every one of these connections,
    read back from the RTCRtpSenders; checked: audio first, within the uplink."""
    try:
        await kiosk.page.wait_for_function(
            BUDGET_APPLIED, arg=list(peers), timeout=15_000, polling=250
        )
    except PlaywrightTimeout:
        budget = await kiosk.page.evaluate("window.visio.budget()")
        pytest.fail(f"budget not applied to {peers}: {json.dumps(budget)}")
    budget: dict[str, Any] = await kiosk.page.evaluate("window.visio.budget()")
    assert budget["uplink_kbps"] == UPLINK_KBPS, budget
    assert set(budget["peers"]) == set(peers), budget
    total = 0.0
    for key, applied in budget["peers"].items():
        audio, video = applied["audio_kbps"], applied["video_kbps"]
        assert audio is not None and video is not None, (key, budget)
        assert audio >= AUDIO_FLOOR_KBPS, (key, budget)
        total += audio + video
    assert total <= UPLINK_KBPS, budget
    # Audio first: whatever video gets comes out of what the audio left.
    audio_total = sum(applied["audio_kbps"] for applied in budget["peers"].values())
    assert audio_total <= UPLINK_KBPS and total > audio_total, budget
    # The tiles show what was applied.
    stage = kiosk.page.locator("#call-stage")
    await expect(stage).to_have_attribute("data-uplink-kbps", str(UPLINK_KBPS))
    for key in peers:
        tile = kiosk.page.locator(f'#call-stage [data-participant="{key}"]')
        if await tile.count():
            await expect(tile).to_have_attribute(
                "data-audio-kbps", str(budget["peers"][key]["audio_kbps"])
            )
    return budget


# ------------------------------------------------------------------ real-time text

RECORD_LIVE_LINE = """key => {
  const live = document.getElementById("rtt-live");
  const seen = [];
  const record = () => {
    const text = live.querySelector(`[data-rtt-live="${key}"] .rtt-text`);
    const now = text ? text.textContent : null;
    if (now !== null && seen[seen.length - 1] !== now) seen.push(now);
  };
  new MutationObserver(record)
    .observe(live, { subtree: true, childList: true, characterData: true });
  window.liveLineSeen = seen;
}"""
LIVE_TEXT = """key => {
  const text = document.querySelector(`#rtt-live [data-rtt-live="${key}"] .rtt-text`);
  return text ? text.textContent : null;
}"""


async def live_line_is(party: Party, key: str, text: str) -> None:
    await party.page.wait_for_function(
        f"key => ({LIVE_TEXT})(key) === {json.dumps(text)}", arg=key, timeout=10_000
    )


def final_line(party: Party, sender: str) -> Any:
    return party.page.locator(f'#rtt-log .rtt-line[data-sender="{sender}"][data-final="true"]')


async def type_text(party: Party, text: str) -> None:
    await party.page.keyboard.type(text, delay=100)


def assert_typed_live(seen: list[str], first: str, corrected: str, final: str, where: str) -> None:
    """The line grew a letter at a time, shrank on Backspace, and grew again."""
    assert seen and seen[-1] == final, f"{where}: {seen}"
    growing = [text for text in seen if first.startswith(text) and len(text) < len(first)]
    assert len(set(growing)) >= 3, f"{where}: too few intermediate prefixes: {seen}"
    top = seen.index(first) if first in seen else -1
    assert top >= 0, f"{where}: {first!r} never shown: {seen}"
    lengths = [len(text) for text in seen[: top + 1]]
    assert lengths == sorted(lengths), f"{where}: the line did not only grow: {seen}"
    after = seen[top + 1 :]
    assert corrected in after, f"{where}: the correction to {corrected!r} never showed: {seen}"
    for text in seen:
        assert first.startswith(text) or final.startswith(text), f"{where}: {text!r} in {seen}"


# ------------------------------------------------------------------ tests


async def test_kiosk_expert_and_interpreter_in_one_call(
    browser: Browser, server: Any, tmp_path: Path
) -> None:
    room = await three_party_call(browser, server)
    kiosk, expert, interpreter = room.parties

    # 1. Everyone sees and hears the two others, and the kiosk's uplink is shared.
    await tiles_play(kiosk, EXPERT, INTERPRETER)
    await tiles_play(expert, KIOSK, INTERPRETER)
    await tiles_play(interpreter, KIOSK, EXPERT)
    await kiosk_budget(kiosk, EXPERT, INTERPRETER)
    # The kiosk's layout keeps the expert and the interpreter (who signs) large.
    for key in (EXPERT, INTERPRETER):
        tile = kiosk.page.locator(f'#call-stage .stage-main [data-participant="{key}"]')
        await expect(tile).to_be_visible()

    # 2. Real-time text: the expert's line appears on the kiosk and the interpreter's
    # console letter by letter, corrections included, then goes to the log.
    for party in (kiosk, interpreter):
        await party.page.evaluate(RECORD_LIVE_LINE, EXPERT)
    await expert.page.get_by_test_id("rtt-input").click()
    await type_text(expert, "Bonjour Madame")
    for party in (kiosk, interpreter):
        await live_line_is(party, EXPERT, "Bonjour Madame")
    for _ in range(len("Madame")):
        await expert.page.keyboard.press("Backspace", delay=50)
    for party in (kiosk, interpreter):
        await live_line_is(party, EXPERT, "Bonjour ")
    await type_text(expert, "Monsieur")
    for party in (kiosk, interpreter):
        await live_line_is(party, EXPERT, "Bonjour Monsieur")
    for party, where in ((kiosk, "kiosk"), (interpreter, "interpreter")):
        seen = await party.page.evaluate("window.liveLineSeen")
        assert_typed_live(seen, "Bonjour Madame", "Bonjour ", "Bonjour Monsieur", where)

    await expert.page.keyboard.press("Enter")
    for party in (kiosk, interpreter):
        await expect(final_line(party, EXPERT)).to_have_count(1)
        await expect(final_line(party, EXPERT).locator(".rtt-text")).to_have_text(
            "Bonjour Monsieur"
        )
        await expect(party.page.locator(f'[data-rtt-live="{EXPERT}"]')).to_have_count(0)
    mine = expert.page.locator("#rtt-log .rtt-line.is-mine")
    await expect(mine.locator(".rtt-text")).to_have_text("Bonjour Monsieur")
    await expect(expert.page.get_by_test_id("rtt-input")).to_have_value("")

    # The citizen answers from the kiosk's field; the expert and the interpreter read it.
    await kiosk.page.get_by_test_id("rtt-input").click()
    await kiosk.page.keyboard.type("Merci", delay=50)
    await kiosk.page.get_by_test_id("rtt-send").click()
    for party in (expert, interpreter):
        await expect(final_line(party, KIOSK).locator(".rtt-text")).to_have_text("Merci")

    # 3. The kiosk's captions can be read from the seat, on a 1280x800 screen.
    captions = kiosk.page.locator(f'#rtt-log .rtt-line[data-sender="{EXPERT}"] .rtt-text')
    size = await captions.evaluate("element => parseFloat(getComputedStyle(element).fontSize)")
    assert size >= CAPTION_MIN_PX, f"kiosk captions at {size}px"
    assert await kiosk.page.locator("#rtt-log").get_attribute("aria-live") == "polite"
    # The letters being typed stay out of the live region: a screen reader reads
    # each finished sentence once, not each letter.
    outside = await kiosk.page.evaluate(
        "document.getElementById('rtt-live').closest('[aria-live]') === null"
    )
    assert outside
    viewport = kiosk.page.viewport_size
    assert viewport == KIOSK_SCREEN
    for hook in ("rtt-log", "rtt-input", "hangup-button"):
        box = await kiosk.page.get_by_test_id(hook).bounding_box()
        assert box is not None, hook
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"] + 1, (hook, box)
    box = await captions.bounding_box()
    assert box is not None and box["y"] + box["height"] <= viewport["height"], box
    screenshot = tmp_path / "kiosk-captions.png"
    await kiosk.page.screenshot(path=screenshot)
    assert screenshot.stat().st_size > 0

    # 5. No serious accessibility violation on any of the three pages in the call.
    await assert_accessible(kiosk, "kiosk in a call with an interpreter")
    await assert_accessible(expert, "expert console in a call with an interpreter")
    await assert_accessible(interpreter, "interpreter console in a call")
    assert_no_page_errors(kiosk, expert, interpreter)


async def test_supervisor_sees_listens_and_whispers_to_the_expert(
    browser: Browser, server: Any
) -> None:
    supervisor = await open_party(
        browser,
        f"{server.url}/admin",
        server.token("supervisor", "super-caf", partner="caf", name="Superviseur CAF"),
    )
    await supervisor.state_is("live")
    kiosk, expert, interpreter, call = await two_party_call(browser, server)
    room = Room(kiosk, expert, interpreter, call)
    admin = supervisor.page

    # The interpreter is signed in but on a break: the request waits, and the
    # supervisor's page lists it until an interpreter takes it.
    await ask_for_interpreter(expert, "lsf")
    await expect(expert.page.get_by_test_id("interpreter-status")).to_have_attribute(
        "data-state", "queued"
    )
    request = admin.locator('[data-testid^="interpreter-request-"]')
    await expect(request).to_have_count(1)
    await expect(request).to_have_attribute("data-state", "waiting")
    await expect(request).to_contain_text("Mairie de Test")
    await set_available(interpreter)
    await interpreter_accepts(room)
    await expect(request).to_have_count(0)

    # 4. The running call is listed with its participants; the supervisor joins.
    row = admin.get_by_test_id(f"call-row-{call}")
    await expect(row).to_be_visible()
    for name in ("Mairie de Test", "Camille Expert", "Léa Interprète"):
        await expect(row).to_contain_text(name)
    await assert_accessible(supervisor, "supervisor page with a running call")
    await admin.get_by_test_id(f"listen-{call}").click()
    await supervisor.state_is("listening")
    assert await admin.evaluate("window.visio.call") == call

    for party in room.parties:
        notice = party.page.get_by_test_id("supervisor-listening")
        await expect(notice).to_be_visible()
        await expect(notice).not_to_be_empty()
        person = party.page.locator(f'#people li[data-participant="{SUPERVISOR}"]')
        await expect(person).to_have_attribute("data-role", "supervisor")
        await expect(person).to_have_attribute("data-sends-media", "false")
        # A supervisor sends no media: no tile for it.
        await expect(party.page.locator(f'[data-participant="{SUPERVISOR}"].tile')).to_have_count(0)
    await expect(expert.page.get_by_test_id("supervisor-listening")).to_contain_text(
        "Superviseur CAF"
    )

    # The supervisor receives everyone; the kiosk's budget now counts its connection.
    await tiles_play(supervisor, KIOSK, EXPERT, INTERPRETER, sends=False)
    budget = await kiosk_budget(kiosk, EXPERT, INTERPRETER, SUPERVISOR)
    assert budget["plan"]["connections"] == 3
    await tiles_play(kiosk, EXPERT, INTERPRETER)

    # Whisper: from the supervisor to the expert, and back; never to the kiosk.
    secret, reply = "Pensez au justificatif de domicile", "Bien noté, merci"
    await admin.get_by_test_id("whisper-input").fill(secret)
    await admin.get_by_test_id("whisper-send").click()
    whispered = expert.page.locator(f'#whisper-log .whisper-line[data-sender="{SUPERVISOR}"]')
    await expect(whispered).to_contain_text(secret)
    await expect(expert.page.get_by_test_id("whisper-log")).to_be_visible()
    await expect(admin.locator('#whisper-log .whisper-line[data-sender="me"]')).to_contain_text(
        secret
    )
    await expert.page.get_by_test_id("whisper-input").fill(reply)
    await expert.page.get_by_test_id("whisper-send").click()
    answer = admin.locator(f'#whisper-log .whisper-line[data-sender="{EXPERT}"]')
    await expect(answer).to_contain_text(reply)

    # Real-time text still reaches everyone, the supervisor included, after which the
    # whispers would have arrived too had they been sent to the kiosk.
    await expert.page.get_by_test_id("rtt-input").fill("Je vérifie votre dossier")
    await expert.page.get_by_test_id("rtt-send").click()
    for party in (kiosk, interpreter, supervisor):
        await expect(final_line(party, EXPERT).locator(".rtt-text")).to_have_text(
            "Je vérifie votre dossier"
        )
    for party, where in ((kiosk, "kiosk"), (interpreter, "interpreter")):
        page_text = await party.page.evaluate("document.documentElement.textContent")
        for words in (secret, reply):
            assert words not in page_text, f"{where} shows a whisper"
        assert await party.page.locator(".whisper-line").count() == 0, where
    # Nor did the server send the kiosk any, shown or not.
    assert any('"call.data"' in frame for frame in kiosk.frames_received)
    leaked = [frame for frame in kiosk.frames_received if "whisper" in frame or secret in frame]
    assert not leaked, leaked

    # 5. The supervisor's page while listening.
    await assert_accessible(supervisor, "supervisor listening to a call")

    # Leaving: the notice goes away on the other pages; the call goes on.
    await admin.get_by_test_id("leave-button").click()
    await supervisor.state_is("live")
    for party in room.parties:
        await expect(party.page.get_by_test_id("supervisor-listening")).to_be_hidden()
        assert await party.page.evaluate("window.visio.state") == "in_call"
    await kiosk_budget(kiosk, EXPERT, INTERPRETER)
    await supervisor.close()
    assert_no_page_errors(kiosk, expert, interpreter, supervisor)


async def test_kiosk_asks_for_an_interpreter_itself(browser: Browser, server: Any) -> None:
    """The citizen's own button: with two languages on offer, the kiosk asks which."""
    kiosk, expert, interpreter, call = await two_party_call(browser, server)
    room = Room(kiosk, expert, interpreter, call)
    await set_available(interpreter)
    await kiosk.page.get_by_test_id("interpreter-request").click()
    choice = kiosk.page.get_by_test_id("interpreter-language-lsf")
    await expect(choice).to_be_visible()
    await expect(kiosk.page.get_by_test_id("interpreter-language-ar")).to_be_visible()
    await choice.click()
    await interpreter_accepts(room)
    await expect(expert.page.get_by_test_id("interpreter-status")).to_contain_text("Léa Interprète")
    await tiles_play(interpreter, KIOSK, EXPERT)
    await kiosk_budget(kiosk, EXPERT, INTERPRETER)
    assert_no_page_errors(kiosk, expert, interpreter)
