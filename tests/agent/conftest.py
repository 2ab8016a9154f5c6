"""Real devices for the agent's tests, one of each per test session: SANE's ``test``
backend through a private configuration, and a private cupsd with file printers (both
from ``visio_agent.trial``, which ``visio-kiosk-agent --trial-devices`` uses too).

``SANE_CONFIG_DIR`` and ``CUPS_SERVER`` are set for the whole session (libsane and
libcups read them once per process or thread) and put back at its end; the cupsd is
stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from visio_agent.trial import PrivateCups, write_sane_config

KIOSK_PRINTER = "kiosk-file"
BROKEN_PRINTER = "kiosk-broken"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "devices: real SANE test backend and a private cupsd (tests/agent)"
    )
    config.addinivalue_line(
        "markers", "command_timeout(s): the server's device command timeout in agent tests"
    )


def _set_env(name: str, value: str) -> str | None:
    previous = os.environ.get(name)
    os.environ[name] = value
    return previous


def _restore_env(name: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


@pytest.fixture(scope="session")
def sane_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SANE configuration with only the test backend, A4 allowed; in force for the
    session (``SANE_CONFIG_DIR``)."""
    folder = write_sane_config(tmp_path_factory.mktemp("sane"))
    previous = _set_env("SANE_CONFIG_DIR", str(folder))
    yield folder
    _restore_env("SANE_CONFIG_DIR", previous)


@pytest.fixture(scope="session")
def cups_server() -> Iterator[PrivateCups]:
    """A private cupsd with ``kiosk-file`` (the default, A4, writing to a file) and
    ``kiosk-broken`` (its file cannot be written: every job aborts)."""
    # Not under pytest's temporary folders: those are private to root, and CUPS filters
    # run as user lp must reach the spool and the output.
    folder = Path(tempfile.mkdtemp(prefix="visio-cups-"))
    folder.chmod(0o755)
    cups = PrivateCups(folder)
    cups.start()
    try:
        cups.add_file_printer(KIOSK_PRINTER)
        cups.add_file_printer(BROKEN_PRINTER, Path("/nonexistent-folder/kiosk-broken.prn"))
        cups.lpadmin("-d", KIOSK_PRINTER)
        previous = _set_env("CUPS_SERVER", cups.server)
        yield cups
        _restore_env("CUPS_SERVER", previous)
    finally:
        cups.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def kiosk_printer(cups_server: PrivateCups) -> Iterator[str]:
    """The kiosk's printer, enabled and without state reasons again after the test."""
    yield KIOSK_PRINTER
    cups_server.set_reasons(KIOSK_PRINTER)
    cups_server.run("cupsenable", KIOSK_PRINTER)
