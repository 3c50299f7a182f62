"""Unauthenticated peers cannot fill the log: one line per cause, no tracebacks (real process, real sockets)."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
from pathlib import Path

import pytest

from edge_agent.appliance.logs import PeerNoiseFilter
from tests.support.agent import AgentProcess, agent_cache, write_config

__all__ = ["agent_cache"]

MALFORMED = [
    b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",  # duplicate CL
    b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\r\n folded\r\n\r\n",  # obs-fold
    b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",  # NUL in a header
]
HANDSHAKE = (
    b"GET /stream/detection HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (WARNING|ERROR|CRITICAL) ")


def _exchange(port: int, data: bytes, half_close: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:  # the handshake's writer side goes away before the 101 is written
            sock.shutdown(socket.SHUT_WR)
            return
        while sock.recv(65536):  # the 400 and the close: the request has been handled (and logged)
            pass


def _problems(agent: AgentProcess) -> list[str]:
    return [line for line in agent.stderr_lines if STAMP.match(line)]


def test_malformed_requests_and_dropped_handshakes_log_one_line_per_cause(
    tmp_path: Path, agent_cache: Path
) -> None:
    agent = AgentProcess(write_config(tmp_path / "c.toml", agent_cache))
    try:
        port = agent.wait_listening()
        for _ in range(100):
            _exchange(port, HANDSHAKE, half_close=True)
        for _ in range(25):
            for request in MALFORMED:
                _exchange(port, request)
        assert agent.get("/livez")[0] == 200
        agent.log_contains("BadHttpMessage")  # the first one is told, on one line
        problems = _problems(agent)
        assert not [line for line in agent.stderr_lines if "Traceback" in line], agent.stderr_lines[-20:]
        causes = [re.sub(r"^.*? (WARNING|ERROR) ", "", line).split(":")[0:3] for line in problems]
        assert len(problems) <= 3, problems  # bad request, reset handshake, maybe one more: not 200
        assert len({tuple(c) for c in causes}) == len(causes), problems
    finally:
        agent.kill()


def test_accept_at_the_fd_limit_logs_one_line(tmp_path: Path, agent_cache: Path) -> None:
    if subprocess.run(["prlimit", "--version"], capture_output=True, check=False).returncode != 0:
        pytest.fail("prlimit (util-linux) missing")
    agent = AgentProcess(write_config(tmp_path / "c.toml", agent_cache), prefix=["prlimit", "--nofile=96:96"])
    held: list[socket.socket] = []
    try:
        port = agent.wait_listening()
        for _ in range(160):  # well past the limit: the kernel queues them, accept() fails with EMFILE
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        line = agent.log_contains("out of system resource")
        assert "Too many open files" in line
        for sock in held:
            sock.close()
        held.clear()
        assert agent.get("/livez", timeout=10)[0] == 200  # serving again once the peer let go
        accept_lines = [line for line in _problems(agent) if "accept" in line]
        assert len(accept_lines) == 1, accept_lines
        assert not [line for line in agent.stderr_lines if "Traceback" in line]
    finally:
        for sock in held:
            sock.close()
        agent.kill()


def test_filter_window_counts_what_it_suppressed() -> None:
    now = [0.0]
    noise = PeerNoiseFilter(window=60.0, clock=lambda: now[0])

    def record(msg: str, exc: BaseException | None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, ("peer",), info)

    first = record("Error handling request from %s", ConnectionResetError("reset\nby peer"))
    assert noise.filter(first) and first.exc_info is None
    assert first.getMessage() == "Error handling request from peer: ConnectionResetError: reset by peer"
    assert not any(
        noise.filter(record("Error handling request from %s", ConnectionResetError())) for _ in range(9)
    )
    assert noise.filter(record("other %s", None))  # another cause is not held back
    now[0] = 61.0
    later = record("Error handling request from %s", ConnectionResetError("again"))
    assert noise.filter(later) and "[9 more like this in the last 60s]" in later.getMessage()
    bug = record("Unhandled exception %s", KeyError("x"))
    assert noise.filter(bug) and bug.exc_info is not None  # our own bugs keep their traceback
