"""Who may import what, for the client side of the layout (docs/architecture.md):
the server never loads the client, the simulator, the device agent or aiortc; media
needs nothing from the wire protocol; the client needs nothing but the wire protocol;
case files, like the queue, need nothing of ours; the device agent speaks the wire
protocol through the client and knows nothing of the server's insides."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AIORTC = {"aiortc", "aioice", "av"}

FORBIDDEN = {
    "media": {"signaling", "queueing", "visio_server", "visio_client", "visio_sim"},
    "visio_client": {"queueing", "media", "visio_server", "visio_sim", *AIORTC},
    "visio_sim": {"queueing", *AIORTC},
    "visio_server": {"visio_client", "visio_sim", "visio_agent", *AIORTC},
    "casefiles": {
        "signaling",
        "queueing",
        "media",
        "visio_server",
        "visio_client",
        "visio_sim",
        "visio_agent",
        *AIORTC,
    },
    "visio_agent": {"queueing", "casefiles", "media", "visio_server", "visio_sim", *AIORTC},
}


def imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_it_must_not(package: str) -> None:
    offending = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in offending.items() if names} == {}


def test_only_media_peer_and_tracks_import_aiortc() -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in ("media", "signaling", "queueing", "visio_server", "visio_client")
        for path in (ROOT / package).rglob("*.py")
        if imported_packages(path) & AIORTC
    }
    assert users <= {"media/peer.py", "media/tracks.py"}


def test_the_server_app_loads_neither_aiortc_nor_the_client() -> None:
    probe = (
        "import sys, visio_server.app, visio_server.cli; "
        "print(sorted({'aiortc', 'av', 'visio_client', 'visio_sim', 'visio_agent', 'sane', 'cups'}"
        " & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
