"""Log noise a peer can cause (bad HTTP, dropped handshakes, accept() at the fd limit): one line per cause.

aiohttp logs a traceback for every malformed request and every handler a peer broke off; asyncio logs one
for every failed accept() (hundreds of thousands a minute at the fd limit). Unauthenticated peers must not
be able to fill the journal, so records of these loggers are rate-limited per cause (logger, message
template, exception type): the first goes out as one line without traceback, the rest of the window is
counted and the count is reported with the next one.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable

from aiohttp import http_exceptions

NOISY_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.websocket", "aiohttp.access", "asyncio")
WINDOW_S = 60.0
MAX_CAUSES = 256
# Exceptions that describe what a peer or the OS did, not a bug of ours: no traceback.
PEER_ERRORS: tuple[type[BaseException], ...] = (
    http_exceptions.HttpProcessingError,
    ConnectionError,
    TimeoutError,
)
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def _peer_caused(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, PEER_ERRORS):
        return True
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


class PeerNoiseFilter(logging.Filter):
    """Let one record per cause through per window; flatten peer-caused ones to a single line."""

    def __init__(self, window: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._causes: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within the window; otherwise the record, made one line if a peer caused it."""
        if record.levelno < logging.WARNING:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        cause = (record.name, str(record.msg), type(exc).__name__ if exc else "")
        now = self._clock()
        started, suppressed = self._causes.get(cause, (None, 0))
        if started is not None and now - started < self._window:
            self._causes[cause] = (started, suppressed + 1)
            return False
        if len(self._causes) >= MAX_CAUSES:
            self._causes.pop(next(iter(self._causes)))
        self._causes[cause] = (now, 0)
        if _peer_caused(exc):
            self._flatten(record, exc, suppressed)
        elif suppressed:
            record.msg = f"{record.msg} [{suppressed} more like this in the last {self._window:.0f}s]"
        return True

    def _flatten(self, record: logging.LogRecord, exc: BaseException | None, suppressed: int) -> None:
        text = record.getMessage()
        if exc is not None:
            detail = " ".join(str(exc).split())[:200]
            text += f": {type(exc).__name__}" + (f": {detail}" if detail else "")
        if suppressed:
            text += f" [{suppressed} more like this in the last {self._window:.0f}s]"
        record.msg, record.args = "; ".join(p.strip() for p in text.splitlines() if p.strip()), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None


def quiet_peer_noise(window: float = WINDOW_S) -> PeerNoiseFilter:
    """Install one shared filter on aiohttp's and asyncio's loggers (serve calls it once)."""
    noise = PeerNoiseFilter(window)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(noise)
    return noise
