"""A first-come, first-served pool of free items for asyncio (asyncio.Queue lets a newcomer jump waiters)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairPool(Generic[T]):
    """Free items are handed straight to the longest waiter, so no caller can starve another."""

    def __init__(self) -> None:
        self._free: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T]] = deque()

    def put(self, item: T) -> None:
        """Return an item: the oldest live waiter gets it, else it goes back on the shelf."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._free.append(item)

    async def get(self) -> T:
        """Take an item, waiting in line behind earlier callers."""
        if self._free and not self._waiters:
            return self._free.popleft()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result())  # handed over just as we were cancelled: pass it on
            raise

    def close(self, error: BaseException) -> None:
        """Forget all free items and fail every waiter with `error` (the owner is stopping)."""
        self._free.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
