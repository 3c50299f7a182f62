"""Lifecycle state shared by the appliance parts: start time, listening ports, stop and change events."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from yarl import URL


@dataclass
class Lifecycle:
    """What phase the service is in; events let background tasks react without polling."""

    started: float = field(default_factory=time.monotonic)
    ports: list[int] = field(default_factory=list)
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    reloads: int = 0
    last_reload_error: str | None = None
    config_warnings: list[str] = field(default_factory=list)
    stop_deadline: float | None = None  # loop time by which the process must have stopped
    requests_in_flight: int = 0  # open non-probe requests and streams (the drain waits for them)
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    def uptime(self) -> float:
        """Seconds since the application was built."""
        return time.monotonic() - self.started


def ports_from_banner(text: str) -> list[int]:
    """TCP ports in aiohttp's 'Running on http://host:port, ...' banner (it reports the bound ports)."""
    ports: list[int] = []
    for word in text.replace(",", " ").split():
        if word.startswith(("http://", "https://")):
            port = URL(word).port
            if port and port not in ports:
                ports.append(port)
    return ports
