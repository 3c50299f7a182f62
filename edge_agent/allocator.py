"""glibc malloc settings for the serving process (frames arrive as large transient socket reads)."""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 20
TRIM_THRESHOLD = 8 << 20


def keep_reads_on_heap() -> bool:
    """Serve blocks below 1 MiB from the heap instead of fresh mmap()s; return whether glibc accepted it.

    asyncio reads sockets with recv(256 KiB): Python allocates 256 KiB and shrinks it to what arrived. glibc
    mmaps blocks that size and, as a shrink never moves its adaptive threshold, does so on every read: page
    faults, and an munmap that interrupts the inference threads on the other cores (TLB shootdown). Measured
    on this box: 38 us per 48 KiB frame read instead of 4 us, and 0.9 ms of event-loop CPU per streamed
    frame. The trim threshold keeps the heap from being handed back and refaulted after every frame.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.info("malloc tuning not available (not glibc): socket reads use mmap")
    return ok
