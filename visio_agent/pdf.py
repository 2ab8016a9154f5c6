"""Scanned pages into one PDF, built with Pillow: each page a JPEG image (DCTDecode)
whose resolution is the one the scanner used, so a page scanned as A4 at any dpi is an
A4 page in the PDF. Pages are added one at a time (Pillow's incremental ``append``),
so a long document never sits in memory whole.

scanimage's own PDF output is never used: it has been seen damaged."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from PIL import Image

from .scanner import ScannedPage

__all__ = ["JPEG_QUALITY", "build_pdf"]

JPEG_QUALITY: Final = 80
"""Text stays sharp at 150 dpi while an A4 grey page weighs some 100-300 KB."""


def build_pdf(
    pages: Sequence[ScannedPage], out: Path, *, title: str = "", quality: int = JPEG_QUALITY
) -> int:
    """Write ``pages`` in order as one PDF at ``out`` (replaced atomically: a reader never
    sees half a file); the number of pages written."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    partial = out.with_name(out.name + ".part")
    for index, page in enumerate(pages):
        with Image.open(page.path) as image:
            image.load()
            converted = image if image.mode in ("L", "RGB") else image.convert("RGB")
            converted.save(
                partial,
                "PDF",
                append=index > 0,
                dpi=(page.dpi, page.dpi),
                quality=quality,
                title=title or None,
                creator="visio-kiosk-agent",
            )
    with partial.open("rb") as written:
        os.fsync(written.fileno())
    partial.replace(out)
    return len(pages)
