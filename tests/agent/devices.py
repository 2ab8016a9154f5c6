"""A private SANE configuration and a private cupsd for the agent's tests.

SANE: only the ``test`` backend (no slow network backends), its scan area opened to
300 mm so A4 fits (the packaged 200 mm refuses it). CUPS: a cupsd of the tests' own on
a free loopback port, with printers writing to files (``FileDevice Yes``); nothing in
/etc is touched and the system's cupsd, if any, is left alone. Whatever is started is
stopped by its PID.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["A4_OPTION", "PrivateCups", "free_port", "write_sane_config"]

A4_OPTION = "media=iso_a4_210x297mm"
_PR_SET_PDEATHSIG = 1

_TEST_CONF = """\
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


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, so a killed test
    run leaves no cupsd behind (Linux ``PR_SET_PDEATHSIG``)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_sane_config(folder: Path) -> Path:
    """``folder`` with ``dll.conf`` (``test`` only) and ``test.conf`` (A4 allowed): point
    ``SANE_CONFIG_DIR`` at it before SANE is initialised."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dll.conf").write_text("test\n", "utf-8")
    packaged = Path("/etc/sane.d/test.conf")
    text = packaged.read_text("utf-8") if packaged.exists() else _TEST_CONF
    text = re.sub(r"(?m)^geometry_max\s+.*$", "geometry_max 300.0", text)
    if "geometry_max" not in text:
        text += "geometry_max 300.0\n"
    (folder / "test.conf").write_text(text, "utf-8")
    return folder


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
        """Where file printers write."""
        return self.folder / "out"

    def env(self) -> dict[str, str]:
        return {**os.environ, "CUPS_SERVER": self.server}

    def start(self) -> None:
        binary = shutil.which("cupsd") or "/usr/sbin/cupsd"
        assert Path(binary).exists(), "cupsd is installed by scripts/test.sh (Debian cups)"
        for name in ("spool", "cache", "state", "log", "ppd", "out", "tmp"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        # Filters run as user lp: they must reach the spool's temp files and the output.
        for name in ("out", "tmp"):
            (self.folder / name).chmod(0o1777)
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
            f"PageLog {folder}/log/page_log\n"
            "FileDevice Yes\nSandboxing Relaxed\nSystemGroup root\n",
            "utf-8",
        )
        log = (self.folder / "cupsd.out").open("wb")
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
        log.close()
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"cupsd exited with {self.process.returncode}: "
                    + (self.folder / "cupsd.out").read_text("utf-8", "replace")
                )
            ready = subprocess.run(
                ["lpstat", "-r"], env=self.env(), capture_output=True, text=True, check=False
            )
            if "is running" in ready.stdout and "not" not in ready.stdout:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cupsd did not answer: {ready.stdout} {ready.stderr}")
            time.sleep(0.05)

    def lpadmin(self, *args: str) -> None:
        self.run("lpadmin", *args)

    def add_file_printer(self, name: str, target: Path | None = None) -> Path:
        """A PostScript printer writing each job to a file (``out/<name>.prn``), A4."""
        path = target or self.out / f"{name}.prn"
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
        """A CUPS command line tool (``cupsdisable``, ``cancel``...) against this cupsd."""
        result = subprocess.run(
            list(command), env=self.env(), capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr

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
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
