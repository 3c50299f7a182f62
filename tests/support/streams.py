"""Shared fixtures and helpers of the streaming tests (no tests here): real servers, WS helpers."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from edge_agent.app import create_app
from edge_agent.config import Config, LoadedConfig

Serve = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="session")
def ov_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OpenVINO cache for this module's apps: compile once, start warm."""
    return tmp_path_factory.mktemp("ov-cache")


def loaded(config: Config, cache: Path, overrides: dict[str, Any]) -> LoadedConfig:
    """The test config with `section__key=value` overrides, validated on assignment."""
    cfg = config.model_copy(deep=True)
    cfg.engine.cache_dir = str(cache)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return LoadedConfig(config=cfg, sources={}, path=None)


@pytest.fixture
async def serve(config: Config, ov_cache: Path) -> AsyncIterator[Serve]:
    """Start real servers (create_app on 127.0.0.1, real engine); all are closed after the test."""
    clients: list[TestClient[Any, Any]] = []

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(loaded(config, ov_cache, overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def next_json(ws: aiohttp.ClientWebSocketResponse, skip: tuple[str, ...] = ("fps",)) -> dict[str, Any]:
    """Next JSON message, skipping unsolicited announcements."""
    while True:
        msg = await ws.receive(timeout=30)
        assert msg.type == WSMsgType.TEXT, f"expected text, got {msg.type} {msg.data!r} {msg.extra!r}"
        data: dict[str, Any] = json.loads(msg.data)
        if data.get("type") not in skip:
            return data


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition with a deadline (for server-side state that follows a client-visible event)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


def with_dimensions(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its SOF header declaring other dimensions."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = jpeg.find(marker)
        if at > 0:
            return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]
    raise AssertionError("no SOF marker")


class SseReader:
    """Parses an SSE response into events ({id, event, data}) and comments ({comment})."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self, timeout: float = 30.0, comments: bool = False) -> dict[str, Any]:
        """The next event (or comment when asked); raises EOFError when the stream ends."""
        fields: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    if comments:
                        return {"comment": line[1:].strip()}
                    continue
                if not line:
                    if "data" in fields:
                        fields["json"] = json.loads(fields["data"])
                        return fields
                    fields = {}  # e.g. the `retry:` block
                    continue
                key, _, value = line.partition(": ")
                fields[key] = int(value) if key == "id" else value

    async def until(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        """Skip to the next event of one kind."""
        while True:
            ev = await self.next(timeout)
            if ev.get("event") == event:
                return ev
