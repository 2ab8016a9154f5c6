"""Typed identifiers: a kiosk id can never be passed where an expert id is expected."""

from typing import NewType

__all__ = ["CallId", "ExpertId", "KioskId", "ServiceId"]

CallId = NewType("CallId", str)
ExpertId = NewType("ExpertId", str)
KioskId = NewType("KioskId", str)
ServiceId = NewType("ServiceId", str)
