"""The scanner and the PDF built from its pages, against SANE's real ``test`` backend:
page sizes, resolutions, colour, the feeder running empty and a jam; plus the mapping
of the expert's settings onto what a device offers, which needs no device."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import ImageChops

from signaling.messages import ScanSettings
from visio_agent.errors import ScannerFailure
from visio_agent.pdf import build_pdf
from visio_agent.scanner import (
    ScannedPage,
    Scanner,
    choose_mode,
    choose_resolution,
    choose_source,
    parse_option,
)

A4_POINTS = (595.28, 841.89)
MM_PER_INCH = 25.4


def a4_pixels(dpi: int) -> tuple[int, int]:
    return int(210 / MM_PER_INCH * dpi), int(297 / MM_PER_INCH * dpi)


@pytest.fixture
async def scanner(sane_config: Path) -> AsyncIterator[Scanner]:
    device = Scanner("test:0", options={"test_picture": "Color pattern"})
    yield device
    await device.close()


async def scan(
    scanner: Scanner, settings: ScanSettings, folder: Path, count: int = 1
) -> list[ScannedPage]:
    await scanner.prepare(settings)
    try:
        return [
            await scanner.scan_page(folder / f"page-{n}.png", feeder=settings.source == "feeder")
            for n in range(count)
        ]
    finally:
        if settings.source == "feeder":
            await scanner.end_batch()
        scanner.finish()


def image_objects(page: pdfium.PdfPage) -> list[pdfium.PdfImage]:
    return list(page.get_objects(filter=[pdfium.raw.FPDF_PAGEOBJ_IMAGE]))


@pytest.mark.devices
@pytest.mark.parametrize(
    ("color", "dpi", "colorspace"),
    [
        ("gray", 150, pdfium.raw.FPDF_COLORSPACE_DEVICEGRAY),
        ("color", 150, pdfium.raw.FPDF_COLORSPACE_DEVICERGB),
        ("gray", 300, pdfium.raw.FPDF_COLORSPACE_DEVICEGRAY),
        ("color", 300, pdfium.raw.FPDF_COLORSPACE_DEVICERGB),
    ],
)
async def test_a_page_scanned_as_a4_is_an_a4_page_of_jpeg_at_its_resolution(
    scanner: Scanner, tmp_path: Path, color: str, dpi: int, colorspace: int
) -> None:
    settings = ScanSettings(color=color, resolution=dpi)  # type: ignore[arg-type]
    [page] = await scan(scanner, settings, tmp_path)
    assert (page.width, page.height) == a4_pixels(dpi)
    assert page.dpi == dpi

    out = tmp_path / "scan.pdf"
    assert build_pdf([page], out, title="Avis d'imposition") == 1
    pdf = pdfium.PdfDocument(out)
    assert len(pdf) == 1
    width, height = pdf[0].get_size()
    assert width == pytest.approx(A4_POINTS[0], abs=1.5)
    assert height == pytest.approx(A4_POINTS[1], abs=1.5)
    [image] = image_objects(pdf[0])
    assert image.get_filters() == ["DCTDecode"]
    assert image.get_px_size() == a4_pixels(dpi)
    metadata = image.get_metadata()
    assert metadata.horizontal_dpi == pytest.approx(dpi, abs=0.5)
    assert metadata.colorspace == colorspace
    decoded = image.get_bitmap().to_pil()
    assert decoded.size == a4_pixels(dpi)
    if color == "color":
        # The test pattern has colour: some pixel differs between channels.
        red, green, blue = decoded.convert("RGB").split()
        assert ImageChops.difference(red, green).getbbox() or (
            ImageChops.difference(green, blue).getbbox()
        )
    assert pdf.get_metadata_dict()["Title"] == "Avis d'imposition"


@pytest.mark.devices
async def test_pages_of_a_multipage_scan_are_one_pdf_in_order(
    scanner: Scanner, tmp_path: Path
) -> None:
    pages = await scan(scanner, ScanSettings(resolution=150, multipage=True), tmp_path, count=3)
    out = tmp_path / "pages.pdf"
    assert build_pdf(pages, out) == 3
    pdf = pdfium.PdfDocument(out)
    assert len(pdf) == 3
    for index in range(3):
        [image] = image_objects(pdf[index])
        assert image.get_px_size() == a4_pixels(150)
        assert pdf[index].get_size()[0] == pytest.approx(A4_POINTS[0], abs=1.5)
    assert not out.with_name(out.name + ".part").exists()


@pytest.mark.devices
async def test_the_feeder_gives_sheets_until_it_runs_empty(
    scanner: Scanner, tmp_path: Path
) -> None:
    # The test backend's feeder holds ten sheets.
    await scanner.prepare(ScanSettings(source="feeder", resolution=75))
    sheets = 0
    with pytest.raises(ScannerFailure) as empty:
        while sheets < 20:
            await scanner.scan_page(tmp_path / f"sheet-{sheets}.png", feeder=True)
            sheets += 1
    await scanner.end_batch()
    scanner.finish()
    assert sheets == 10
    assert empty.value.status == "no_docs"
    assert empty.value.reason == "Document feeder out of documents"


@pytest.mark.devices
async def test_a_jam_fails_with_the_devices_words_and_the_next_scan_works(
    sane_config: Path, tmp_path: Path
) -> None:
    jamming = Scanner("test:0", options={"read_return_value": "SANE_STATUS_JAMMED"})
    try:
        await jamming.prepare(ScanSettings())
        with pytest.raises(ScannerFailure) as jam:
            await jamming.scan_page(tmp_path / "jam.png")
        jamming.finish()
        assert (jam.value.status, jam.value.reason) == ("jammed", "Document feeder jammed")
        health = await jamming.health()
        assert health.present and health.detail == "Document feeder jammed"
    finally:
        await jamming.close()

    fine = Scanner("test:0")
    try:
        await fine.prepare(ScanSettings())
        page = await fine.scan_page(tmp_path / "after.png")
        assert page.width == a4_pixels(150)[0]
    finally:
        await fine.close()


@pytest.mark.devices
async def test_health_sees_the_scanner_or_its_absence(sane_config: Path) -> None:
    present = Scanner("test:0")
    absent = Scanner("test:9")
    try:
        health = await present.health()
        assert (health.present, health.ready, health.state) == (True, True, "idle")
        assert present.name == "test:0"
        missing = await absent.health()
        assert (missing.present, missing.ready, missing.state) == (False, False, "offline")
        assert missing.detail  # SANE's words
    finally:
        await present.close()
        await absent.close()


@pytest.mark.devices
async def test_the_first_scanner_found_is_used_by_default(sane_config: Path) -> None:
    default = Scanner()
    try:
        assert (await default.health()).present
        assert default.name == "test:0"
    finally:
        await default.close()


def test_modes_are_found_under_the_devices_own_names() -> None:
    assert choose_mode(["Lineart", "Gray", "Color"], "color") == "Color"
    assert choose_mode(["Lineart", "Grayscale", "24bit Color"], "gray") == "Grayscale"
    assert choose_mode(["Binary", "Colour"], "color") == "Colour"
    assert choose_mode(None, "gray") is None
    with pytest.raises(ScannerFailure, match="no color mode"):
        choose_mode(["Lineart", "Gray"], "color")


def test_sources_are_found_under_the_devices_own_names() -> None:
    assert choose_source(["Flatbed", "Automatic Document Feeder"], "feeder") == (
        "Automatic Document Feeder"
    )
    assert choose_source(["Flatbed", "ADF Front", "ADF Duplex"], "feeder") == "ADF Front"
    assert choose_source(["Flatbed", "ADF"], "flatbed") == "Flatbed"
    assert choose_source(None, "flatbed") is None
    with pytest.raises(ScannerFailure, match="no document feeder"):
        choose_source(None, "feeder")
    with pytest.raises(ScannerFailure, match="no document feeder"):
        choose_source(["Flatbed"], "feeder")


def test_the_nearest_allowed_resolution_is_used() -> None:
    assert choose_resolution((1.0, 1200.0, 1.0), 300) == 300.0
    assert choose_resolution((100.0, 600.0, 50.0), 75) == 100.0
    assert choose_resolution((75.0, 600.0, 0.0), 1200) == 600.0
    assert choose_resolution([75, 150, 300, 600], 200) == 150.0
    assert choose_resolution([75, 150, 300, 600], 225) == 300.0
    assert choose_resolution(None, 150) == 150.0


def test_scanner_options_from_the_command_line_are_typed() -> None:
    assert parse_option("read-delay=yes") == ("read_delay", True)
    assert parse_option("read-delay-duration=200000") == ("read_delay_duration", 200000)
    assert parse_option("br-x=215.9") == ("br_x", 215.9)
    assert parse_option("test-picture=Color pattern") == ("test_picture", "Color pattern")
    with pytest.raises(ValueError):
        parse_option("no-value")
