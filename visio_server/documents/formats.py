"""What a stored file is, judged by its content, and its pages drawn as PNG.

Rules this module keeps:

1. The type of a file is what its bytes say, never its name or a header: a PDF must
   start with ``%PDF-`` and open in PDFium; an image must be JPEG, PNG or TIFF by its
   signature and pass Pillow's ``verify``. Anything else is refused.
2. Only this package imports Pillow and pypdfium2. PDFium is one library for the whole
   process and not thread-safe: every call into it holds ``_PDFIUM``, whichever
   application or thread makes it.
3. These functions block (files, decoding): callers run them in a worker thread.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import pypdfium2
from PIL import Image

__all__ = ["MAX_WIDTH", "Checked", "UnsupportedFile", "check_file", "render_page"]

_PDFIUM = threading.Lock()
"""PDFium is a process-wide C library that must not be entered by two threads at once."""

MAX_WIDTH = 2400
_MAX_PIXELS = 200_000_000
"""Larger images are refused rather than decoded (a few kilobytes can claim gigapixels)."""


class UnsupportedFile(Exception):
    """The file is not a PDF, JPEG, PNG or TIFF that opens."""


@dataclass(frozen=True)
class Checked:
    mime: str
    extension: str
    pages: int


_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "PNG", "image/png", "png"),
    (b"II*\x00", "TIFF", "image/tiff", "tiff"),
    (b"MM\x00*", "TIFF", "image/tiff", "tiff"),
)


def check_file(path: Path) -> Checked:
    """The type and page count of the file at ``path``; ``UnsupportedFile`` otherwise."""
    with path.open("rb") as file:
        head = file.read(16)
    if head.startswith(b"%PDF-"):
        return Checked("application/pdf", "pdf", _pdf_pages(path))
    for signature, pillow_format, mime, extension in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return Checked(mime, extension, _image_pages(path, pillow_format))
    raise UnsupportedFile("not a PDF, JPEG, PNG or TIFF file")


def _pdf_pages(path: Path) -> int:
    with _PDFIUM:
        try:
            document = pypdfium2.PdfDocument(path)
        except pypdfium2.PdfiumError as exc:
            raise UnsupportedFile(f"not a PDF that opens: {exc}") from None
        try:
            pages = len(document)
        finally:
            document.close()
    if pages < 1:
        raise UnsupportedFile("a PDF without pages")
    return pages


def _open_image(path: Path, pillow_format: str) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=[pillow_format])
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
            raise UnsupportedFile(f"not an image that opens: {exc}") from None
        except Image.DecompressionBombError:
            raise UnsupportedFile("an image too large to draw") from None
    if image.width * image.height > _MAX_PIXELS:
        image.close()
        raise UnsupportedFile("an image too large to draw")
    return image


def _image_pages(path: Path, pillow_format: str) -> int:
    image = _open_image(path, pillow_format)
    try:
        image.verify()
    except Exception as exc:  # Pillow raises whatever its decoder found wrong
        raise UnsupportedFile(f"a damaged image: {exc}") from None
    finally:
        image.close()
    # verify() leaves the image unusable: open again to count the frames of a TIFF.
    image = _open_image(path, pillow_format)
    try:
        return int(getattr(image, "n_frames", 1))
    finally:
        image.close()


def render_page(path: Path, mime: str, page: int, width: int) -> bytes:
    """Page ``page`` (1-based) of the file, ``width`` pixels wide, as PNG bytes;
    ``IndexError`` for a page the file does not have."""
    width = max(16, min(width, MAX_WIDTH))
    if mime == "application/pdf":
        image = _render_pdf(path, page, width)
    else:
        image = _render_image(path, mime, page, width)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


def _render_pdf(path: Path, page: int, width: int) -> Image.Image:
    with _PDFIUM:
        document = pypdfium2.PdfDocument(path)
        try:
            if not 1 <= page <= len(document):
                raise IndexError(page)
            pdf_page = document[page - 1]
            try:
                scale = width / max(pdf_page.get_width(), 1.0)
                bitmap = pdf_page.render(scale=scale)
                image: Image.Image = bitmap.to_pil()
                image.load()
            finally:
                pdf_page.close()
        finally:
            document.close()
    return image


def _render_image(path: Path, mime: str, page: int, width: int) -> Image.Image:
    pillow_format = {"image/jpeg": "JPEG", "image/png": "PNG", "image/tiff": "TIFF"}[mime]
    source = _open_image(path, pillow_format)
    try:
        frames = int(getattr(source, "n_frames", 1))
        if not 1 <= page <= frames:
            raise IndexError(page)
        source.seek(page - 1)
        frame = source.convert("RGBA" if "A" in source.mode else "RGB")
    finally:
        source.close()
    height = max(1, round(frame.height * width / max(frame.width, 1)))
    return frame.resize((width, height), Image.Resampling.LANCZOS)
