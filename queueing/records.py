"""Commands and events as plain JSON-able records, for the journal and the event log.

A record is ``{"kind": <class name>, "at": <now>, **fields}``; the class names are
part of the stored format, so renaming a command or event class needs a migration.
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import commands, events

__all__ = ["command_from_record", "command_record", "event_from_record", "event_record"]

_COMMANDS: dict[str, type[commands.Command]] = {
    name: cls
    for name in commands.__all__
    if isinstance(cls := getattr(commands, name), type) and issubclass(cls, commands.Command)
}
_EVENTS: dict[str, type[events.Event]] = {
    name: cls
    for name in events.__all__
    if isinstance(cls := getattr(events, name), type) and issubclass(cls, events.Event)
}


def command_record(command: commands.Command, now: float) -> dict[str, Any]:
    fields = msgspec.to_builtins(command)
    return {"kind": type(command).__name__, "at": now, **fields}


def command_from_record(record: dict[str, Any]) -> tuple[commands.Command, float]:
    fields = dict(record)
    cls = _COMMANDS[fields.pop("kind")]
    now = float(fields.pop("at"))
    return msgspec.convert(fields, type=cls), now


def event_record(event: events.Event) -> dict[str, Any]:
    fields = msgspec.to_builtins(event)
    # Tuples come back from JSON as lists: write them as lists, so that a record
    # read back from a store equals the one written.
    for name, value in fields.items():
        if isinstance(value, tuple):
            fields[name] = list(value)
    return {"kind": type(event).__name__, **fields}


def event_from_record(record: dict[str, Any]) -> events.Event:
    fields = dict(record)
    cls = _EVENTS[fields.pop("kind")]
    return msgspec.convert(fields, type=cls)
