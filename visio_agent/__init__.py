"""The kiosk device agent: drives the scanner (SANE) and the printer (CUPS) for the expert."""

from .errors import (
    CommandCancelled,
    DeviceFailure,
    PrinterFailure,
    ScannerFailure,
    ServerRefused,
    TransferInterrupted,
)
from .pdf import build_pdf
from .printer import JobStatus, Printer, printer_part
from .scanner import ScannedPage, Scanner

__all__ = [
    "CommandCancelled",
    "DeviceFailure",
    "JobStatus",
    "Printer",
    "PrinterFailure",
    "ScannedPage",
    "Scanner",
    "ScannerFailure",
    "ServerRefused",
    "TransferInterrupted",
    "build_pdf",
    "printer_part",
]
