"""Stopping the background tasks the appliance's cleanup contexts start."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task that is still running and wait for it; an error it already ended with is raised."""
    if task is None:
        return
    task.cancel()  # no effect on a task that has ended
    with contextlib.suppress(asyncio.CancelledError):
        await task
