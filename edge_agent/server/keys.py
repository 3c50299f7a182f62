"""Typed application keys: all shared state lives on the app, never in module globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from aiohttp import web

from ..config import LoadedConfig

if TYPE_CHECKING:
    from ..engine import Engine

T = TypeVar("T")


@dataclass
class Ref(Generic[T]):
    """A mutable holder, so a reload can swap the engine or config of a running (frozen) app."""

    value: T


CONFIG_KEY: web.AppKey[Ref[LoadedConfig]] = web.AppKey("config")
ENGINE_KEY: web.AppKey[Ref["Engine"]] = web.AppKey("engine")
