"""Lifecycle with real signals to a real `edge-agent serve`: SIGTERM drains and exits 0, SIGHUP reloads."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge_agent.appliance.reload import cli_overrides, needs_new_engine
from edge_agent.config import load_config
from tests.support.agent import AgentProcess, NotifySocket, agent_cache, write_config

__all__ = ["agent_cache"]


class Agent:
    """An agent subprocess with its notify socket, used from async tests without blocking the loop."""

    def __init__(self, tmp_path: Path, cache: Path, **sections: dict[str, Any]) -> None:
        self.config = tmp_path / "c.toml"
        self.cache = cache
        write_config(self.config, cache, **sections)
        self.notify = NotifySocket(tmp_path)
        self.proc = AgentProcess(self.config, env={"NOTIFY_SOCKET": self.notify.env_value})

    async def wait_for(self, key: str, value: str | None = None, after: int = 0, timeout: float = 60) -> int:
        return await asyncio.to_thread(self.notify.wait_for, key, value, timeout, after)

    def rewrite(self, **sections: dict[str, Any]) -> None:
        write_config(self.config, self.cache, **sections)

    def url(self, path: str) -> str:
        return self.proc.url(path)


@pytest.fixture
async def agent_factory(tmp_path: Path, agent_cache: Path) -> AsyncIterator[Any]:
    made: list[Agent] = []

    async def make(**sections: dict[str, Any]) -> Agent:
        agent = Agent(tmp_path, agent_cache, **sections)
        made.append(agent)
        await agent.wait_for("READY", "1", timeout=90)
        agent.proc.wait_listening(timeout=5)
        return agent

    yield make
    for agent in made:
        agent.proc.kill()
        agent.notify.close()


async def _stream(
    ws: aiohttp.ClientWebSocketResponse, jpeg: bytes, replies: list[dict[str, Any]], fps_limit: float
) -> None:
    """Send a frame, wait for its reply, repeat (one frame in flight, paced below the session's fps limit)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 1.25 / fps_limit
        await ws.send_bytes(jpeg)
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        reply = msg.json()
        while reply["type"] not in ("detections", "error", "dropped"):
            reply = (await ws.receive()).json()
        replies.append(reply)
        await asyncio.sleep(max(0.0, due - loop.time()))


async def test_sigterm_closes_sessions_and_exits_0(agent_factory: Any, photos: dict[str, bytes]) -> None:
    agent = await agent_factory(server={"shutdown_timeout": 5.0})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(agent.url("/stream/detection"))
        assert (await ws.receive_json())["type"] == "session"
        await ws.send_bytes(photos["bus"])
        reply = await ws.receive_json()
        while reply["type"] != "detections":
            reply = await ws.receive_json()
        sse = await http.get(agent.url("/stream/events"))
        assert sse.status == 200 and sse.content_type == "text/event-stream"
        await sse.content.readuntil(b"\n\n")  # the preamble: the stream is open

        agent.proc.signal(signal.SIGTERM)
        started = time.monotonic()
        await agent.wait_for("STOPPING", "1", timeout=10)
        closing = await ws.receive(timeout=10)
        while closing.type == aiohttp.WSMsgType.TEXT:
            closing = await ws.receive(timeout=10)
        # The close frame the server sent: 1001 going away (the client's own close_code can read 1006
        # when the server drops the TCP connection before the client's close reply arrives).
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1001), closing
        async with asyncio.timeout(10):
            while await sse.content.readany():  # the SSE stream ends instead of hanging
                pass
        assert await asyncio.to_thread(agent.proc.wait_exit, 10) == 0
        assert time.monotonic() - started < 5.0 + 1.0
    assert agent.notify.fields()[-1] == {"STATUS": "stopped"}


async def test_sighup_swaps_model_without_dropping_the_session(
    agent_factory: Any, photos: dict[str, bytes]
) -> None:
    agent = await agent_factory(model={"name": "first"})
    replies: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(agent.url("/stream/detection"))
        hello = await ws.receive_json()
        assert hello["model"]["name"] == "first"
        streaming = asyncio.create_task(_stream(ws, photos["zidane"], replies, hello["fps_limit"]))
        try:
            async with asyncio.timeout(20):
                while len(replies) < 3:
                    await asyncio.sleep(0.02)
            agent.rewrite(model={"name": "second"}, detection={"confidence": 0.5})
            mark = len(agent.notify.messages)
            agent.proc.signal(signal.SIGHUP)
            reloading = await agent.wait_for("RELOADING", "1", after=mark)
            ready = await agent.wait_for("READY", "1", after=reloading)
            assert agent.notify.fields()[ready]["STATUS"].startswith("serving 1 session")
            before_swap = len(replies)
            async with asyncio.timeout(20):
                while len(replies) < before_swap + 3:  # the same session keeps getting answers
                    assert not streaming.done(), "the session ended during the reload"
                    await asyncio.sleep(0.02)
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
        assert {r["type"] for r in replies} == {"detections"}, [
            r for r in replies if r["type"] != "detections"
        ]
        assert not ws.closed
        async with http.get(agent.url("/v1/info")) as resp:
            assert (await resp.json())["model"]["name"] == "second"
        async with http.get(agent.url("/healthz")) as resp:
            doc = await resp.json(content_type=None)
            assert resp.status == 200 and doc["checks"]["model:labels"][0]["componentId"] == "second"
        async with http.get(agent.url("/metrics")) as resp:
            assert "edge_agent_config_reloads_total 1.0" in await resp.text()
        await ws.close()
    agent.proc.log_contains("reload: now serving model second")


@pytest.mark.parametrize(
    ("bad", "logged"),
    [
        ({"detection": {"confidence": 7}}, "detection.confidence"),
        ({"detection": {"no_such_key": 1}}, "unknown key"),
        ({"model": {"path": "/nonexistent/model.xml"}}, "new engine did not start"),
    ],
)
async def test_sighup_with_bad_config_keeps_serving_the_old_one(
    agent_factory: Any, photos: dict[str, bytes], bad: dict[str, dict[str, Any]], logged: str
) -> None:
    agent = await agent_factory(model={"name": "first"})
    agent.rewrite(model={"name": "first"}, **{k: v for k, v in bad.items() if k != "model"})
    if "model" in bad:
        agent.rewrite(model={"name": "first", **bad["model"]})
    mark = len(agent.notify.messages)
    agent.proc.signal(signal.SIGHUP)
    reloading = await agent.wait_for("RELOADING", "1", after=mark)
    ready = await agent.wait_for("READY", "1", after=reloading)
    assert "last reload failed" in agent.notify.fields()[ready]["STATUS"]
    assert logged in agent.proc.log_contains("reload rejected")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            agent.url("/v1/detect"), data=photos["bus"], headers={"Content-Type": "image/jpeg"}
        ) as r:
            assert r.status == 200 and any(d["label"] == "person" for d in (await r.json())["detections"])
        async with http.get(agent.url("/healthz")) as resp:
            doc = await resp.json(content_type=None)
        assert resp.status == 200 and doc["checks"]["model:labels"][0]["componentId"] == "first"
        assert doc["notes"][0].startswith("last reload failed")
    # A later good reload clears the note.
    agent.rewrite(model={"name": "first"})
    mark = len(agent.notify.messages)
    agent.proc.signal(signal.SIGHUP)
    ready = await agent.wait_for("READY", "1", after=await agent.wait_for("RELOADING", "1", after=mark))
    assert "last reload failed" not in agent.notify.fields()[ready]["STATUS"]
    agent.proc.signal(signal.SIGTERM)
    assert await asyncio.to_thread(agent.proc.wait_exit, 10) == 0


def test_reload_keeps_command_line_values(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", tmp_path)
    loaded = load_config(
        path, environ={}, overrides={("server", "port"): 9123, ("server", "host"): "10.0.0.9"}
    )
    assert cli_overrides(loaded) == {("server", "port"): 9123, ("server", "host"): "10.0.0.9"}
    again = load_config(path, environ={}, overrides=cli_overrides(loaded))
    assert (again.config.server.port, again.config.server.host) == (9123, "10.0.0.9")


def test_which_changes_need_a_new_engine(tmp_path: Path) -> None:
    base = load_config(write_config(tmp_path / "a.toml", tmp_path), environ={}).config
    same_engine = base.model_copy(deep=True)
    same_engine.streaming.max_fps = 20
    same_engine.mdns.instance_name = "renamed"
    assert not needs_new_engine(base, same_engine)
    for section, key, value in (
        ("model", "name", "x"),
        ("engine", "num_requests", 1),
        ("detection", "iou", 0.3),
    ):
        changed = base.model_copy(deep=True)
        setattr(getattr(changed, section), key, value)
        assert needs_new_engine(base, changed), section


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("directory", "is a directory, not a file"),
        ("not_utf8", "not UTF-8 text"),
        ("removed", "file not found"),
    ],
)
async def test_sighup_with_an_unreadable_config_path_keeps_config_and_ends_ready(
    agent_factory: Any, damage: str, reason: str
) -> None:
    agent = await agent_factory(model={"name": "first"})
    agent.config.unlink()
    if damage == "directory":
        agent.config.mkdir()
    elif damage == "not_utf8":
        agent.config.write_bytes(b'[model]\nname = "caf\xe9"\n')
    mark = len(agent.notify.messages)
    agent.proc.signal(signal.SIGHUP)
    reloading = await agent.wait_for("RELOADING", "1", after=mark)
    ready = await agent.wait_for("READY", "1", after=reloading, timeout=10)  # systemctl reload returns
    assert reason in agent.notify.fields()[ready]["STATUS"]
    assert reason in agent.proc.log_contains("reload rejected")
    assert not [line for line in agent.proc.stderr_lines if "Traceback" in line]
    async with aiohttp.ClientSession() as http, http.get(agent.url("/healthz")) as resp:
        doc = await resp.json(content_type=None)
    assert resp.status == 200 and doc["checks"]["model:labels"][0]["componentId"] == "first"
    assert reason in doc["notes"][0]
