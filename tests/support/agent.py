"""Test helpers (no tests here): a stand-in for systemd's notify socket and a real `edge-agent serve` process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

BANNER = "======== Running on "


def edge_agent_bin() -> str:
    """The installed console script of this venv."""
    path = Path(sys.executable).with_name("edge-agent")
    found = str(path) if path.exists() else shutil.which("edge-agent")
    if not found:
        pytest.fail("edge-agent console script not installed in the venv")
    return found


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd: records every sd_notify message with its time."""

    def __init__(self, tmp: Path, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = tmp / "notify.sock"
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode("latin-1").splitlines() if "=" in line)
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, timeout: float = 60.0, after: int = 0) -> int:
        """Index of the first message (from index `after`) carrying key (=value); fails on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (_, fields) in enumerate(self.messages[after:], start=after):
                    if key in fields and (value is None or fields[key] == value):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {key}={value or '*'} within {timeout}s; got {self.fields()}")
                self._cond.wait(left)

    def fields(self) -> list[dict[str, str]]:
        """All messages so far."""
        with self._cond:
            return [f for _, f in self.messages]

    def times_of(self, key: str) -> list[float]:
        """Arrival times of messages carrying key."""
        with self._cond:
            return [t for t, f in self.messages if key in f]

    def close(self) -> None:
        """Stop listening."""
        self.sock.close()


def write_config(path: Path, cache_dir: Path, **sections: dict[str, Any]) -> Path:
    """A TOML config: CPU, loopback, any port, mDNS off unless overridden; sections are merged in."""
    base: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout": 5.0},
        "engine": {"device": "CPU", "cache_dir": str(cache_dir)},
        "mdns": {"enabled": False},
        "events": {"state_dir": str(path.parent / "state")},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class AgentProcess:
    """A real `edge-agent serve` subprocess; `port` is read from aiohttp's banner (the bound port)."""

    def __init__(
        self, config: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        cmd = [*(prefix or []), edge_agent_bin(), "serve", "--config", str(config)]
        self.proc = subprocess.Popen(
            cmd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.port: int | None = None
        self.stderr_lines: list[str] = []
        self._banner = threading.Event()
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(BANNER) and self.port is None:
                self.port = int(line[len(BANNER) :].split()[0].rsplit(":", 1)[1])
                self._banner.set()

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip())

    def wait_listening(self, timeout: float = 90.0) -> int:
        """The bound port, once the banner was printed."""
        deadline = time.monotonic() + timeout
        while not self._banner.wait(0.1):
            if self.proc.poll() is not None:
                pytest.fail(
                    f"serve exited with {self.proc.returncode}:\n" + "\n".join(self.stderr_lines[-30:])
                )
            if time.monotonic() > deadline:
                pytest.fail("serve did not start listening:\n" + "\n".join(self.stderr_lines[-30:]))
        assert self.port is not None
        return self.port

    def url(self, path: str) -> str:
        """http URL of a path on the agent."""
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        """Status and JSON body of a request (error statuses included)."""
        req = urllib.request.Request(self.url(path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"{}")
            except ValueError:
                return exc.code, {"raw": body.decode("latin-1")}

    def signal(self, sig: signal.Signals) -> None:
        """Send a real signal to the process."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Exit code, failing if the process does not exit in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not exit within {timeout}s:\n" + "\n".join(self.stderr_lines[-30:]))

    def log_contains(self, text: str, timeout: float = 10.0) -> str:
        """The first stderr log line containing text (polled with a deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stderr_lines):
                if text in line:
                    return line
            time.sleep(0.05)
        pytest.fail(f"log never said {text!r}:\n" + "\n".join(self.stderr_lines[-30:]))

    def kill(self) -> None:
        """Make sure the process is gone (test cleanup)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="session")
def agent_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OpenVINO cache for every served agent in the session (warm starts after the first)."""
    return tmp_path_factory.mktemp("agent-cache")


def assert_quiet(notify: NotifySocket, key: str, after: int, seconds: float) -> None:
    """No message carrying key arrives after index `after` during a measurement window of `seconds`."""
    deadline = time.monotonic() + seconds
    with notify._cond:
        while (left := deadline - time.monotonic()) > 0:
            late = [f for f in [f for _, f in notify.messages[after:]] if key in f]
            assert not late, f"{key} arrived after it should have stopped: {late}"
            notify._cond.wait(left)
        assert not [f for _, f in notify.messages[after:] if key in f]
