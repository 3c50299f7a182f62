"""sd_notify over a real AF_UNIX datagram socket: message format, abstract sockets, never blocking, quietly off."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.appliance.notify import Notifier, ascii_status, watchdog_period
from edge_agent.appliance.state import ports_from_banner
from tests.support.agent import NotifySocket


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path, abstract=request.param == "abstract")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.env_value)
    yield sock
    sock.close()


def test_messages_arrive_on_path_and_abstract_sockets(listener: NotifySocket) -> None:
    notifier = Notifier()
    assert notifier.enabled
    notifier.status("compiling model on GPU")
    notifier.extend_timeout(90)
    notifier.ready("serving 3 sessions, 18.5 fps on GPU.0")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    listener.wait_for("STOPPING", "1", timeout=5)
    got = listener.fields()
    assert got[0] == {"STATUS": "compiling model on GPU"}
    assert got[1] == {"EXTEND_TIMEOUT_USEC": "90000000"}
    assert got[2] == {"READY": "1", "STATUS": "serving 3 sessions, 18.5 fps on GPU.0"}
    assert got[3] == {"WATCHDOG": "1"}
    assert got[4]["RELOADING"] == "1"
    # systemd >= 253 needs MONOTONIC_USEC with RELOADING=1: CLOCK_MONOTONIC in microseconds, i.e. about now.
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert 0 <= now_usec - int(got[4]["MONOTONIC_USEC"]) < 5_000_000
    assert got[5]["STOPPING"] == "1"
    notifier.close()


def test_status_is_sent_only_when_it_changes(listener: NotifySocket) -> None:
    notifier = Notifier()
    for _ in range(3):
        notifier.status("ready: idle")
    notifier.status("serving 1 session, 9.0 fps on CPU")
    listener.wait_for("STATUS", "serving 1 session, 9.0 fps on CPU", timeout=5)
    assert [f["STATUS"] for f in listener.fields()] == ["ready: idle", "serving 1 session, 9.0 fps on CPU"]


def test_status_is_one_ascii_line() -> None:
    assert ascii_status("compiling  model\non GPU — 🚀 cafe\u0301") == "compiling model on GPU ? ? cafe?"
    assert len(ascii_status("x" * 1000)) == 200


def test_full_receiver_never_blocks_the_sender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A datagram receiver that never reads: a blocking send would hang the event loop once its queue fills.
    import socket

    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "stuck.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "stuck.sock"))
    notifier = Notifier()
    started = time.monotonic()
    for _ in range(5000):
        notifier.watchdog()
    assert time.monotonic() - started < 2.0
    sink.close()


def test_quietly_off_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready("ready")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.last_status == "stopping: draining sessions and inference"


def test_missing_socket_path_is_quietly_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert not Notifier().enabled


def test_watchdog_period_follows_sd_watchdog_enabled() -> None:
    me = str(os.getpid())
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": me}) == 2.0
    assert (
        watchdog_period({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    )  # meant for another process
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None


def test_ports_from_aiohttp_banner() -> None:
    banner = "======== Running on http://0.0.0.0:8080, http://127.0.0.1:9000 ========\n(Press CTRL+C to quit)"
    assert ports_from_banner(banner) == [8080, 9000]
    assert ports_from_banner("======== Running on http://[::1]:8443 ========") == [8443]
    assert ports_from_banner("nothing here") == []
