"""The shipped systemd units are hardened: systemd-analyze's own offline rating of the repo's files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"


@pytest.mark.parametrize("unit", ["edge-agent.service", "edge-agent-firstboot.service"])
def test_exposure_is_at_most_2(unit: str) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (Debian package systemd)")
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNITS / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", out.stdout)
    assert found, out.stdout + out.stderr
    print(f"{unit}: exposure {found.group(1)}")
    assert float(found.group(1)) <= 2.0, out.stdout


def test_watchdog_is_short_and_stop_timeout_covers_the_drain() -> None:
    text = (UNITS / "edge-agent.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE))
    # A hung loop is caught in 10 s; a stall at once (WATCHDOG=trigger).
    assert settings["WatchdogSec"] == "10s"
    assert settings["NotifyAccess"] == "main"
    assert int(settings["TimeoutStopSec"].rstrip("s")) > 10  # server.shutdown_timeout's default
