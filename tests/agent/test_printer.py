"""The printer against a real (private) cupsd: jobs run to completion with their page
count, fail with the printer's words, and the printer's health reads CUPS's state and
reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.agent.conftest import BROKEN_PRINTER
from visio_agent.errors import PrinterFailure
from visio_agent.printer import JobStatus, Printer, printer_part
from visio_agent.trial import PrivateCups


def write_pdf(path: Path, pages: int) -> Path:
    images = [Image.new("L", (1240, 1754), 255 - 40 * n) for n in range(pages)]
    images[0].save(path, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return path


@pytest.fixture
async def printer(cups_server: PrivateCups, kiosk_printer: str) -> AsyncIterator[Printer]:
    device = Printer(kiosk_printer, server=cups_server.server)
    yield device
    await device.close()


@pytest.mark.devices
async def test_a_job_completes_with_every_page_of_every_copy(
    printer: Printer, cups_server: PrivateCups, tmp_path: Path
) -> None:
    document = write_pdf(tmp_path / "three-pages.pdf", 3)
    seen: list[JobStatus] = []

    async def progress(status: JobStatus) -> None:
        seen.append(status)

    job = await printer.submit(document, title="Attestation CAF", copies=2)
    status = await printer.wait(job, timeout_s=30, on_progress=progress)
    assert status.completed and status.job == job
    assert status.impressions == 3 * 2
    assert seen and all(not s.over for s in seen)
    finished = [line for line in cups_server.completed_jobs().splitlines() if line.strip()]
    assert any(line.startswith(f"kiosk-file-{job} ") for line in finished)
    output = (cups_server.out / "kiosk-file.prn").read_text("latin-1")
    assert output.startswith("%!PS")
    assert "%%Requirements: numcopies(2)" in output


@pytest.mark.devices
async def test_the_default_printer_of_cups_is_used_when_none_is_named(
    cups_server: PrivateCups, kiosk_printer: str, tmp_path: Path
) -> None:
    default = Printer(server=cups_server.server)
    try:
        health = await default.health()
        assert health.present and default.queue == kiosk_printer
        job = await default.submit(write_pdf(tmp_path / "one.pdf", 1), title="t", copies=1)
        assert (await default.wait(job, timeout_s=30)).impressions == 1
    finally:
        await default.close()


@pytest.mark.devices
async def test_a_job_cancelled_in_cups_fails_with_its_reason(
    printer: Printer, cups_server: PrivateCups, kiosk_printer: str, tmp_path: Path
) -> None:
    # Stopped, the printer holds the job until someone at the kiosk cancels it.
    cups_server.run("cupsdisable", kiosk_printer)
    job = await printer.submit(write_pdf(tmp_path / "one.pdf", 1), title="t", copies=1)
    cups_server.run("cancel", str(job))
    with pytest.raises(PrinterFailure) as failure:
        await printer.wait(job, timeout_s=10)
    assert "canceled" in failure.value.reason


@pytest.mark.devices
async def test_a_job_that_does_not_end_in_time_is_cancelled(
    cups_server: PrivateCups, tmp_path: Path
) -> None:
    # The printer's output cannot be written: CUPS stops the job, as it would for a
    # printer out of paper, and it would wait there for ever.
    broken = Printer(BROKEN_PRINTER, server=cups_server.server)
    try:
        job = await broken.submit(write_pdf(tmp_path / "one.pdf", 1), title="t", copies=1)
        with pytest.raises(PrinterFailure) as failure:
            await broken.wait(job, timeout_s=1.5, poll_s=0.1)
        assert "did not finish the job in 2 s" in failure.value.reason
        status = await broken.status(job)
        assert status.over and not status.completed
    finally:
        await broken.close()


@pytest.mark.devices
async def test_health_reports_state_reasons_media_and_toner(
    printer: Printer, cups_server: PrivateCups, kiosk_printer: str
) -> None:
    health = await printer.health()
    assert (health.present, health.ready, health.state, health.media) == (
        True,
        True,
        "idle",
        "ok",
    )

    cups_server.set_reasons(kiosk_printer, "media-empty-error", "toner-low-warning")
    health = await printer.health()
    assert (health.present, health.ready, health.media, health.toner) == (
        True,
        False,
        "empty",
        "low",
    )
    assert "media-empty-error" in health.detail and "toner-low-warning" in health.detail

    cups_server.set_reasons(kiosk_printer)
    assert (await printer.health()).ready


@pytest.mark.devices
async def test_health_of_a_missing_queue_or_an_unreachable_cups(
    cups_server: PrivateCups,
) -> None:
    missing = Printer("no-such-queue", server=cups_server.server)
    nowhere = Printer("kiosk-file", server="127.0.0.1:9")
    try:
        health = await missing.health()
        assert (health.present, health.ready, health.state) == (False, False, "offline")
        health = await nowhere.health()
        assert (health.present, health.state) == (False, "offline")
        assert "CUPS" in health.detail
    finally:
        await missing.close()
        await nowhere.close()


def test_health_from_cups_attributes() -> None:
    idle = printer_part(
        {"printer-state": 3, "printer-state-reasons": ["none"], "printer-is-accepting-jobs": True}
    )
    assert (idle.ready, idle.state, idle.media, idle.toner, idle.detail) == (
        True,
        "idle",
        "ok",
        "",
        "",
    )
    stopped = printer_part(
        {
            "printer-state": 5,
            "printer-state-reasons": ["paused"],
            "printer-state-message": "Paused by the caretaker",
            "printer-is-accepting-jobs": True,
        }
    )
    assert (stopped.ready, stopped.state) == (False, "stopped")
    assert stopped.detail == "paused, Paused by the caretaker"
    refusing = printer_part({"printer-state": 3, "printer-is-accepting-jobs": False})
    assert not refusing.ready and "not accepting jobs" in refusing.detail
    offline = printer_part({"printer-state": 3, "printer-state-reasons": ["offline-report"]})
    assert offline.state == "offline" and offline.ready is False
    needs_paper = printer_part({"printer-state": 4, "printer-state-reasons": ["media-needed"]})
    assert needs_paper.media == "empty" and not needs_paper.ready
    low_paper = printer_part({"printer-state": 3, "printer-state-reasons": ["media-low-report"]})
    assert (low_paper.media, low_paper.ready) == ("low", True)
    markers = printer_part(
        {
            "printer-state": 3,
            "marker-levels": [80, 8],
            "marker-low-levels": [10, 10],
            "marker-types": ["toner", "toner"],
        }
    )
    assert markers.toner == "low"
    unknown = printer_part({"printer-state": 3, "marker-levels": [-1]})
    assert unknown.toner == ""
    empty = printer_part({"printer-state": 3, "printer-state-reasons": ["toner-empty-error"]})
    assert (empty.toner, empty.ready) == ("empty", False)
