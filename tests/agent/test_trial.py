"""Trying the agent without devices: ``visio-kiosk-agent --trial-devices DIR`` as a
process against an in-process server, with the stand-in devices of ``visio_agent.trial``
(the same the other agent tests use), and ``scripts/try-agent.sh`` that runs it.

The agent sets up its devices itself here: the session's SANE configuration and cupsd
(``conftest.py``) are not used, and their variables are kept from the agent.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest

import tests.agent.test_agent_server as agent_tests
from tests.agent.test_agent_server import Connect, devices_ready, documents_of, progress_until, scan
from tests.server.test_documents import Http, connected_caf_call, expert_token, pdf_bytes
from tests.support import RunningServer
from visio_agent.trial import PrivateCups, TrialDevicesError

# The in-process server and its HTTP client, those of the agent's server tests.
server = agent_tests.server
http = agent_tests.http

ROOT = Path(__file__).resolve().parents[2]
TRY_AGENT = ROOT / "scripts" / "try-agent.sh"


class TrialAgent:
    """The agent process and its log (stderr, read at any time)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    def text(self) -> str:
        return self.log.read_text("utf-8", "replace")


@pytest.fixture
async def trial_agent(server: RunningServer, tmp_path: Path) -> AsyncIterator[TrialAgent]:
    """kiosk-1's agent with ``--trial-devices tmp_path/devices`` (a folder user lp cannot
    enter when the tests run as root: the cupsd's files then go under /tmp)."""
    token_file = tmp_path / "device-token"
    token_file.write_text(server.token("device", "kiosk-1") + "\n", "utf-8")
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("SANE_CONFIG_DIR", "CUPS_SERVER")
    }
    log = tmp_path / "agent.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "visio_agent.cli",
            "--server",
            server.url,
            "--token-file",
            str(token_file),
            "--trial-devices",
            str(tmp_path / "devices"),
            "--health-interval",
            "0.2",
            stderr=output,
            env=environment,
        )
    agent = TrialAgent(process, log)
    try:
        yield agent
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        # An agent that did not stop cleanly left the cupsd's folder it made under /tmp.
        for folder in re.findall(r"files in (/tmp/visio-trial-cups-[^)\s]+)", agent.text()):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.devices
async def test_the_trial_agent_scans_into_the_case_file_and_prints_to_its_folder(
    server: RunningServer,
    connect: Connect,
    http: Http,
    tmp_path: Path,
    trial_agent: TrialAgent,
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert, timeout=20)
    printed = tmp_path / "devices" / "printed" / "kiosk-trial.ps"
    log = trial_agent.text()
    assert f"printed pages land in {printed}" in log, log
    cupsd = int(re.findall(r"private cupsd \(pid (\d+)", log)[0])

    # A scan: an A4 page of the grid picture (lines on white), in the case file.
    await scan(expert, call, "trial-scan-1", resolution=75, color="gray")
    document = (await progress_until(expert, "trial-scan-1", "done"))[-1]["document"]
    [listed] = await documents_of(http, server, call)
    assert (listed["id"], listed["origin"], listed["state"]) == (document, "scan", "received")
    status, body = await http.content(document, expert_token(server))
    assert status == 200
    page = pdfium.PdfDocument(io.BytesIO(body))[0]
    assert tuple(round(side) for side in page.get_size()) == (595, 841)
    shades = page.render(scale=0.5).to_pil().convert("L").getextrema()
    assert shades[0] < 64 and shades[1] > 192, f"not a grid: {shades}"

    # A print: two pages, PostScript in DIR/printed.
    status, uploaded = await http.upload(call, expert_token(server), pdf_bytes(2), key="trial-p1")
    assert status == 201, uploaded
    request = {"type": "device.print", "call": call, "key": "trial-print-1"}
    reply = await expert.request({**request, "document": uploaded["id"]})
    assert reply["type"] == "ack", reply
    done = (await progress_until(expert, "trial-print-1", "done"))[-1]
    assert done["pages"] == 2
    output = printed.read_text("latin-1")
    assert output.startswith("%!PS") and "%%Pages: 2" in output

    # Ctrl-C (what scripts/try-agent.sh leaves to the agent): it stops, and its cupsd.
    trial_agent.process.send_signal(signal.SIGINT)
    async with asyncio.timeout(15):
        assert await trial_agent.process.wait() == 0
    log = trial_agent.text()
    assert "trial devices stopped" in log and "Traceback" not in log, log
    assert process_gone(cupsd)


@pytest.mark.devices
async def test_sigterm_after_a_scan_stops_the_trial_agent_cleanly(
    connect: Connect, trial_agent: TrialAgent
) -> None:
    _kiosk, expert, call = await connected_caf_call(connect)
    await devices_ready(expert, timeout=20)
    await scan(expert, call, "trial-scan-2", resolution=75, color="gray")
    await progress_until(expert, "trial-scan-2", "done")
    cupsd = int(re.findall(r"private cupsd \(pid (\d+)", trial_agent.text())[0])
    trial_agent.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        code = await trial_agent.process.wait()
    assert process_gone(cupsd, wait_s=10)  # died with its parent in any case
    assert code == 0 and "trial devices stopped" in trial_agent.text()


def process_gone(pid: int, wait_s: float = 0.0) -> bool:
    """No process ``pid`` (or only its zombie) within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.mark.devices
@pytest.mark.skipif(os.geteuid() != 0, reason="only a cupsd run as root runs filters as lp")
def test_a_private_cupsd_refuses_a_folder_its_filters_cannot_enter(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(TrialDevicesError, match="user lp, who cannot enter"):
        PrivateCups(closed / "cups").start()


# ---------------------------------------------------------------------- the script


def test_the_try_agent_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(TRY_AGENT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(TRY_AGENT, os.X_OK)


def test_the_try_agent_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        # scripts/test.sh installs it; only a run outside it can lack it.
        pytest.skip("shellcheck is not installed")
    scripts = [str(TRY_AGENT), str(TRY_AGENT.with_name("agent-packages.sh"))]
    result = subprocess.run(
        [shellcheck, "-x", *scripts], capture_output=True, text=True, cwd=TRY_AGENT.parents[1]
    )
    assert result.returncode == 0, result.stdout
