"""The configured cameras: started with the app, changed in place by a reload, stopped at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ...config import Config
from ...config.cameras import CameraConfig
from ..base import Services
from ..registry import SessionRegistry
from .camera import Camera

log = logging.getLogger(__name__)
# A camera's session captured these sections when it started: a change restarts every camera.
SHARED_SECTIONS = ("streaming", "hazards", "detection", "engine", "model")


class CameraManager:
    """Cameras by id; `async_apply` adds, removes and restarts changed ones, leaving the others alone."""

    def __init__(self, services: Services, registry: SessionRegistry) -> None:
        self.services = services
        self.registry = registry
        self.cameras: dict[str, Camera] = {}
        self.configured: list[CameraConfig] = []
        self._shared: tuple[Any, ...] | None = None
        self._lock = asyncio.Lock()

    async def async_apply(self, config: Config, labels: tuple[str, ...]) -> None:
        """Bring the running cameras in line with `config.cameras`."""
        async with self._lock:
            shared = tuple(getattr(config, s) for s in SHARED_SECTIONS)
            restart_all = self._shared is not None and shared != self._shared
            self._shared = shared
            wanted = {c.id: c for c in config.cameras if c.enabled}
            stale = [
                cam
                for cid, cam in self.cameras.items()
                if restart_all or cid not in wanted or wanted[cid] != cam.cam
            ]
            await asyncio.gather(*(self._stop(cam, "camera changed or removed by reload") for cam in stale))
            for cid, cam_cfg in wanted.items():
                if cid not in self.cameras:
                    self._start(cam_cfg, config, labels)
            self.configured = list(config.cameras)
            if stale or len(self.cameras) != len(wanted) or restart_all:
                log.info("cameras: %s running", ", ".join(self.cameras) or "none")

    def _start(self, cam_cfg: CameraConfig, config: Config, labels: tuple[str, ...]) -> None:
        camera = Camera(cam_cfg, config, labels, self.services)
        self.cameras[cam_cfg.id] = camera
        self.registry.add(camera.source)
        camera.start()
        log.info("camera %s: watching %s", cam_cfg.id, cam_cfg.display_url)

    async def _stop(self, camera: Camera, reason: str) -> None:
        self.cameras.pop(camera.cam.id, None)
        await camera.async_stop(reason)
        self.registry.remove(camera.source)

    async def async_stop_all(self) -> None:
        """Shutdown: stop every camera."""
        async with self._lock:
            await asyncio.gather(
                *(self._stop(cam, "server shutting down") for cam in list(self.cameras.values()))
            )

    def listing(self) -> list[dict[str, Any]]:
        """Every configured camera, running or disabled, for `/v1/cameras`."""
        rows = []
        for cam_cfg in self.configured:
            camera = self.cameras.get(cam_cfg.id)
            if camera is not None:
                rows.append(camera.to_json())
            else:
                rows.append(
                    {
                        "id": cam_cfg.id,
                        "url": cam_cfg.display_url,
                        "kind": cam_cfg.kind,
                        "enabled": False,
                        "state": "disabled",
                        "reason": "enabled = false",
                    }
                )
        return rows


CAMERAS: web.AppKey[CameraManager] = web.AppKey("cameras", CameraManager)
