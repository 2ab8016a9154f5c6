"""The kiosk device agent: drives the scanner (SANE) and the printer (CUPS) for the expert."""

from .agent import Agent, AgentSettings, backoff_delay
from .errors import (
    CommandCancelled,
    DeviceFailure,
    PrinterFailure,
    ScannerFailure,
    ServerRefused,
    TransferInterrupted,
)
from .journal import Entry, Journal
from .pdf import build_pdf
from .printer import JobStatus, Printer, printer_part
from .scanner import ScannedPage, Scanner

__all__ = [
    "Agent",
    "AgentSettings",
    "CommandCancelled",
    "DeviceFailure",
    "Entry",
    "JobStatus",
    "Journal",
    "Printer",
    "PrinterFailure",
    "ScannedPage",
    "Scanner",
    "ScannerFailure",
    "ServerRefused",
    "TransferInterrupted",
    "backoff_delay",
    "build_pdf",
    "printer_part",
]
