"""Keep the protocol reference in step with the message classes.

    python scripts/protocol_docs.py          # write docs/protocol.schema.json, check protocol.md
    python scripts/protocol_docs.py --check  # write nothing; exit 1 if either is stale

``docs/protocol.schema.json`` is ``signaling.protocol_schema()`` pretty-printed with
sorted keys. ``docs/protocol.md`` must have a heading naming every message type, in
backquotes (for example ``### `call.request` ``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from signaling import protocol_schema
from signaling.messages import ClientMessage, ServerMessage

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCHEMA_PATH = DOCS / "protocol.schema.json"
REFERENCE_PATH = DOCS / "protocol.md"
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
_CODE = re.compile(r"`([^`]+)`")


def schema_text() -> str:
    return json.dumps(protocol_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_types() -> set[str]:
    """Every ``type`` tag a client or the server may send."""
    return {
        str(cls.__struct_config__.tag)
        for union in (ClientMessage, ServerMessage)
        for cls in union.__args__
    }


def documented_types(markdown: str) -> set[str]:
    """The backquoted names that appear in headings of ``markdown``."""
    return {name for heading in _HEADING.findall(markdown) for name in _CODE.findall(heading)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if anything is stale"
    )
    args = parser.parse_args(argv)
    failed = False

    expected = schema_text()
    current = SCHEMA_PATH.read_text("utf-8") if SCHEMA_PATH.exists() else None
    if current != expected:
        if args.check:
            print(f"{SCHEMA_PATH.relative_to(ROOT)} is stale: run scripts/protocol_docs.py")
            failed = True
        else:
            SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
            SCHEMA_PATH.write_text(expected, "utf-8")
            print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")

    if not REFERENCE_PATH.exists():
        print(f"{REFERENCE_PATH.relative_to(ROOT)} is missing")
        return 1
    missing = sorted(message_types() - documented_types(REFERENCE_PATH.read_text("utf-8")))
    if missing:
        print(f"{REFERENCE_PATH.relative_to(ROOT)} has no heading for: {', '.join(missing)}")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
