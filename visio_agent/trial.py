"""Stand-in devices for trying the agent on a machine with no scanner or printer, and
for the agent's tests: SANE's ``test`` backend through a private configuration, and a
private cupsd whose printers write each job to a file.

Not for a real kiosk: there the scanner and the printer are the system's (``/etc/sane.d``,
the system's cupsd), and the agent finds them as it always does.

Rules this module keeps:

1. Nothing of the system's is touched: no file in /etc or /run is written and the
   system's cupsd, if any, is left alone. SANE sees the private folder through
   ``SANE_CONFIG_DIR``, CUPS clients the private cupsd through ``CUPS_SERVER``.
2. SANE gets the ``test`` backend only (none of the slow network backends), its scan
   area opened to 300 mm so A4 fits (the packaged 200 mm refuses it).
3. The cupsd is ours alone: in the foreground, on a free loopback port, stopped by its
   PID, and sent SIGTERM by the kernel when the process that started it dies (Linux),
   so a killed test run or agent leaves none behind.
4. A cupsd run as root runs its filters as user ``lp``: they must reach the cupsd's
   folder. ``PrivateCups.start`` refuses a folder other users cannot enter, rather than
   letting every job fail later in the cupsd's log; ``TrialDevices`` then keeps the
   cupsd's own files in a folder of its own under /tmp, removed at ``stop`` (the
   printed output is written by cupsd itself, as root, so it stays where it was asked).
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "A4_OPTION",
    "TRIAL_PRINTER",
    "TRIAL_SCANNER",
    "TRIAL_TEST_PICTURE",
    "PrivateCups",
    "TrialDevices",
    "TrialDevicesError",
    "free_port",
    "write_sane_config",
]

A4_OPTION: Final = "media=iso_a4_210x297mm"
TRIAL_SCANNER: Final = "test:0"
TRIAL_PRINTER: Final = "kiosk-trial"
TRIAL_TEST_PICTURE: Final = "Grid"
"""Black lines on white: a page that looks scanned, unlike the default solid black."""

_PR_SET_PDEATHSIG: Final = 1
_READY_TIMEOUT_S: Final = 20.0
_STOP_TIMEOUT_S: Final = 10.0

_TEST_CONF: Final = """\
number_of_devices 2
mode Gray
depth 8
hand-scanner false
three-pass false
resolution_min 1.0
resolution_max 1200.0
resolution_quant 1.0
resolution 50.0
test-picture "Solid black"
read-limit false
read-delay false
read-status-code "Default"
fuzzy-parameters false
ppl-loss 0
non-blocking false
select-fd false
enable-test-options false
geometry_min 0.0
geometry_max 300.0
geometry_quant 1.0
tl_x 0.0
tl_y 0.0
br_x 80.0
br_y 100.0
"""
"""The packaged ``test.conf`` of sane-backends 1.1, for when it is not installed."""


class TrialDevicesError(RuntimeError):
    """The stand-in devices could not be set up; the message says why."""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux
    ``PR_SET_PDEATHSIG``)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_sane_config(folder: Path, *, test_picture: str | None = None) -> Path:
    """``folder`` with ``dll.conf`` (``test`` only) and ``test.conf`` (A4 allowed, and
    ``test_picture`` as the default picture if given): point ``SANE_CONFIG_DIR`` at it
    before SANE is initialised."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dll.conf").write_text("test\n", "utf-8")
    packaged = Path("/etc/sane.d/test.conf")
    text = packaged.read_text("utf-8") if packaged.exists() else _TEST_CONF
    text = _set_line(text, "geometry_max", "300.0")
    if test_picture is not None:
        text = _set_line(text, "test-picture", f'"{test_picture}"')
    (folder / "test.conf").write_text(text, "utf-8")
    return folder


def _set_line(text: str, key: str, value: str) -> str:
    line = f"{key} {value}"
    replaced, count = re.subn(rf"(?m)^{re.escape(key)}\s+.*$", lambda _: line, text)
    return replaced if count else f"{text.rstrip()}\n{line}\n"


def _make_open_folder(folder: Path) -> None:
    """``folder`` and its missing parents, open to everyone (whatever the umask) when we
    create them; an existing folder is left as it is."""
    missing = [part for part in (folder, *folder.parents) if not part.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for part in missing:
        part.chmod(0o755)


def _closed_part(folder: Path) -> Path | None:
    """Rule 4: as root, the first folder on the way to ``folder`` that other users
    cannot enter; None when there is none, or when not root (the cupsd then runs its
    filters as ourselves)."""
    if os.geteuid() != 0:
        return None
    for part in reversed((folder, *folder.parents)):
        if part.exists() and not part.stat().st_mode & stat.S_IXOTH:
            return part
    return None


def _check_reachable(folder: Path) -> None:
    closed = _closed_part(folder)
    if closed is not None:
        raise TrialDevicesError(
            f"CUPS runs its filters as user lp, who cannot enter {closed}: choose a "
            f"folder every user can enter (under /tmp for example) or run "
            f"'chmod o+x {closed}'"
        )


@dataclass
class PrivateCups:
    """``cupsd -f`` with its own configuration under ``folder``, on ``port``."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """What ``CUPS_SERVER`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def out(self) -> Path:
        """Where file printers write unless told otherwise."""
        return self.folder / "out"

    def env(self) -> dict[str, str]:
        """This process's environment, CUPS clients pointed at this cupsd."""
        return {**os.environ, "CUPS_SERVER": self.server}

    def start(self) -> None:
        """Write the configuration, start cupsd and wait until it answers."""
        binary = shutil.which("cupsd") or "/usr/sbin/cupsd"
        if not Path(binary).exists() or shutil.which("lpstat") is None:
            raise TrialDevicesError(
                "cupsd and lpstat are needed (Debian packages cups and cups-client)"
            )
        self.folder = self.folder.absolute()
        _make_open_folder(self.folder)
        for name in ("spool", "cache", "state", "log", "ppd", "out", "tmp"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        # Filters run as user lp: they must reach the spool's temp files and the output.
        for name in ("out", "tmp"):
            (self.folder / name).chmod(0o1777)
        _check_reachable(self.folder)
        (self.folder / "cupsd.conf").write_text(
            f"Listen 127.0.0.1:{self.port}\n"
            "Browsing No\nLogLevel info\nDefaultAuthType None\nWebInterface No\n"
            "MaxLogSize 0\nPreserveJobHistory Yes\nPreserveJobFiles No\n"
            "<Location />\n  Order allow,deny\n  Allow all\n</Location>\n"
            "<Policy default>\n  <Limit All>\n    Order deny,allow\n  </Limit>\n</Policy>\n",
            "utf-8",
        )
        folder = self.folder
        (self.folder / "cups-files.conf").write_text(
            f"ServerRoot {folder}\nStateDir {folder}/state\nCacheDir {folder}/cache\n"
            f"RequestRoot {folder}/spool\nTempDir {folder}/tmp\n"
            f"AccessLog {folder}/log/access_log\nErrorLog {folder}/log/error_log\n"
            f"PageLog {folder}/log/page_log\nPrintcap {folder}/printcap\n"
            "FileDevice Yes\nSandboxing Relaxed\nSystemGroup root\n",
            "utf-8",
        )
        with (self.folder / "cupsd.out").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    "-f",
                    "-c",
                    str(self.folder / "cupsd.conf"),
                    "-s",
                    str(self.folder / "cups-files.conf"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise TrialDevicesError(
                    f"cupsd exited with {self.process.returncode}: "
                    + (self.folder / "cupsd.out").read_text("utf-8", "replace")
                )
            ready = subprocess.run(
                ["lpstat", "-r"], env=self.env(), capture_output=True, text=True, check=False
            )
            if "is running" in ready.stdout and "not" not in ready.stdout:
                return
            if time.monotonic() > deadline:
                raise TrialDevicesError(f"cupsd did not answer: {ready.stdout} {ready.stderr}")
            time.sleep(0.05)

    def lpadmin(self, *args: str) -> None:
        self.run("lpadmin", *args)

    def add_file_printer(self, name: str, target: Path | None = None) -> Path:
        """A PostScript printer writing each job to a file (``out/<name>.prn`` unless
        ``target`` says otherwise; each job replaces the previous one), A4."""
        path = (target or self.out / f"{name}.prn").absolute()
        self.lpadmin(
            "-p",
            name,
            "-E",
            "-v",
            f"file://{path}",
            "-m",
            "drv:///sample.drv/generic.ppd",
            "-o",
            A4_OPTION,
            "-o",
            "PageSize=A4",
            "-o",
            "printer-error-policy=abort-job",
        )
        return path

    def set_reasons(self, name: str, *reasons: str) -> None:
        """Make the printer report ``reasons`` (``media-empty-error``...), as a driver
        would; none given: back to ``none``."""
        self.lpadmin("-p", name, "-o", f"printer-state-reasons={','.join(reasons) or 'none'}")

    def run(self, *command: str) -> None:
        """A CUPS command line tool (``cupsdisable``, ``cancel``...) against this cupsd;
        raises ``TrialDevicesError`` with its words if it fails."""
        result = subprocess.run(
            list(command), env=self.env(), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise TrialDevicesError(f"{' '.join(command)}: {result.stderr.strip()}")

    def completed_jobs(self) -> str:
        """``lpstat -W completed -o``: one line per finished job."""
        return subprocess.run(
            ["lpstat", "-W", "completed", "-o"],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def stop(self) -> None:
        """SIGTERM to our cupsd (by its PID), SIGKILL if it is still there after 10 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class TrialDevices:
    """A scanner and a printer to try the agent with, under ``folder``: ``sane.d/``
    (SANE's configuration), ``cups/`` (the cupsd's, unless rule 4 puts it under /tmp)
    and ``printed/`` (what is printed)."""

    folder: Path
    cups: PrivateCups
    scanner: str = TRIAL_SCANNER
    printer: str = TRIAL_PRINTER
    cups_is_temporary: bool = False
    """The cupsd's folder is one of ours under /tmp (rule 4), removed at ``stop``."""

    @classmethod
    def start(cls, folder: Path) -> TrialDevices:
        """Write SANE's configuration, start the cupsd and add the printer (A4, the
        default); the caller stops them with ``stop``."""
        folder = folder.absolute()
        _make_open_folder(folder)
        write_sane_config(folder / "sane.d", test_picture=TRIAL_TEST_PICTURE)
        if _closed_part(folder) is None:
            devices = cls(folder, PrivateCups(folder / "cups"))
        else:
            cups_folder = Path(tempfile.mkdtemp(prefix="visio-trial-cups-"))
            cups_folder.chmod(0o755)
            devices = cls(folder, PrivateCups(cups_folder), cups_is_temporary=True)
        _make_open_folder(devices.printed.parent)
        try:
            devices.cups.start()
            devices.cups.add_file_printer(devices.printer, devices.printed)
            devices.cups.lpadmin("-d", devices.printer)
        except BaseException:
            devices.stop()
            raise
        return devices

    @property
    def sane_config(self) -> Path:
        """What ``SANE_CONFIG_DIR`` takes."""
        return self.folder / "sane.d"

    @property
    def printed(self) -> Path:
        """The printer's output, PostScript: each job replaces the previous one."""
        return self.folder / "printed" / f"{self.printer}.ps"

    def environ(self) -> dict[str, str]:
        """The variables that point SANE and CUPS clients at these devices."""
        return {"SANE_CONFIG_DIR": str(self.sane_config), "CUPS_SERVER": self.cups.server}

    def stop(self) -> None:
        self.cups.stop()
        if self.cups_is_temporary:
            shutil.rmtree(self.cups.folder, ignore_errors=True)
