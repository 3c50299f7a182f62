"""Test helpers (no tests here): drive the default person hazard rule with real photographs over a WebSocket."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.support.streams import next_json


async def detect(ws: aiohttp.ClientWebSocketResponse, jpeg: bytes) -> dict[str, Any]:
    """One frame answered with detections (frames dropped for rate are sent again)."""
    while True:
        await ws.send_bytes(jpeg)
        reply = await next_json(ws)
        if reply["type"] == "detections":
            return reply


async def hazard_cycles(
    client: TestClient[Any, Any], photos: dict[str, bytes], cycles: int, source: str, token: str | None = None
) -> None:
    """Start and end the default person rule `cycles` times (2 frames with people, 5 without)."""
    query = f"client_id={source}" + (f"&token={token}" if token else "")
    async with client.session.ws_connect(client.make_url(f"/stream/detection?{query}")) as ws:
        await next_json(ws)
        await ws.send_json({"type": "config", "fps_limit": 240})
        await next_json(ws)
        for _ in range(cycles):
            for _ in range(2):
                assert (await detect(ws, photos["bus"]))["hazards"]
            for _ in range(5):
                assert not (await detect(ws, photos["coffee"]))["hazards"]
