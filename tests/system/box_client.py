"""Client run INSIDE the test box with /opt/edge-agent/bin/python (minbase has no curl).

box_client.py http METHOD URL [BODY_FILE|-] [TOKEN]   -> prints "status body"
box_client.py stream BASE_URL JPEG_FILE [TOKEN]        -> prints a JSON summary of one WS frame + SSE
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def http(method: str, url: str, body_file: str = "-", token: str | None = None) -> None:
    """One plain HTTP request."""
    body = Path(body_file).read_bytes() if body_file != "-" else None
    req = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", "image/jpeg")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            print(resp.status, resp.read().decode())
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())


async def stream(base: str, jpeg: bytes, token: str | None = None) -> None:
    """Subscribe to SSE, send one JPEG over the WebSocket, report the reply and the SSE events seen."""
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    query = f"?token={token}" if token else ""
    summary: dict[str, Any] = {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/stream/events", headers=headers) as sse,
    ):
        summary["sse_status"] = sse.status
        summary["sse_type"] = sse.headers.get("Content-Type", "")
        async with session.ws_connect(f"{base}/stream/detection{query}") as ws:
            summary["hello"] = (await ws.receive_json(timeout=10))["type"]
            sent = time.monotonic()
            await ws.send_bytes(jpeg)
            reply = await ws.receive_json(timeout=30)
            summary["reply"] = reply["type"]
            summary["labels"] = sorted({d["label"] for d in reply.get("detections", [])})
            summary["events"] = await _sse_events(sse, until="detections", timeout=10)
            summary["sse_delay_s"] = round(time.monotonic() - sent, 3)
    print(json.dumps(summary))


async def _sse_events(sse: Any, until: str, timeout: float) -> list[str]:
    """Event names read from the SSE stream until `until` arrives (or the timeout)."""
    names: list[str] = []

    async def read() -> None:
        async for raw in sse.content:
            line = raw.decode().strip()
            if line.startswith("event:"):
                names.append(line[6:].strip())
                if names[-1] == until:
                    return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return names


def main(argv: list[str]) -> None:
    """Dispatch on the first argument."""
    if argv[0] == "http":
        http(*argv[1:])
    elif argv[0] == "stream":
        asyncio.run(stream(argv[1], Path(argv[2]).read_bytes(), *argv[3:]))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
