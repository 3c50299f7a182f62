"""Typed application keys: all shared state lives on the app, never in module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..config import LoadedConfig

if TYPE_CHECKING:
    from ..engine import Engine

CONFIG_KEY = web.AppKey("config", LoadedConfig)
ENGINE_KEY: web.AppKey["Engine"] = web.AppKey("engine")
