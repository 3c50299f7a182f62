"""The agent's core runtime object: the configuration in force and the engine serving it.

Both are swapped by a reload; everything reads them from here at use, never keeps its own copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .allocator import MemoryReturn
from .config import Config, LoadedConfig
from .errors import EngineNotRunning
from .inference.engine import Engine


@dataclass
class AgentRuntime:
    """The loaded config and the running engine (None until it started)."""

    loaded: LoadedConfig
    engine_or_none: Engine | None = None
    memory: MemoryReturn = field(default_factory=MemoryReturn)  # freed heap back to the OS after peers leave

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self.loaded.config

    @property
    def engine(self) -> Engine:
        """The running engine; raises EngineNotRunning before start-up finished."""
        if self.engine_or_none is None:
            raise EngineNotRunning("engine not started")
        return self.engine_or_none


AGENT: web.AppKey[AgentRuntime] = web.AppKey("agent", AgentRuntime)
