"""systemd sd_notify(3) messages over NOTIFY_SOCKET (sdnotify); quietly off without it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import sdnotify

log = logging.getLogger(__name__)


def ascii_status(text: str, limit: int = 200) -> str:
    """One line of printable ASCII (sdnotify encodes latin-1; systemctl shows one line)."""
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")[:limit]


def watchdog_period(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog period in seconds when systemd asks for pings for this process (sd_watchdog_enabled)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not raw:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", raw)
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """Sends READY/STATUS/STOPPING/RELOADING/WATCHDOG/EXTEND_TIMEOUT_USEC; every call is a no-op when off."""

    def __init__(self) -> None:
        self._notifier = sdnotify.SystemdNotifier()
        sock = self._notifier.socket
        if sock is not None:
            # A full receive queue must never block the event loop; a lost datagram is acceptable.
            sock.setblocking(False)
        self.enabled: bool = sock is not None
        self.last_status: str = ""

    def _send(self, *lines: str) -> None:
        if self.enabled:
            self._notifier.notify("\n".join(lines))

    def status(self, text: str) -> None:
        """Set the STATUS= line shown by systemctl status (sent only when it changes)."""
        clean = ascii_status(text)
        if clean != self.last_status:
            self.last_status = clean
            self._send(f"STATUS={clean}")

    def ready(self, text: str) -> None:
        """Tell systemd start-up (or a reload) is complete."""
        self.last_status = ascii_status(text)
        self._send("READY=1", f"STATUS={self.last_status}")

    def reloading(self) -> None:
        """Tell systemd a configuration reload started (READY=1 ends it)."""
        self.last_status = "reloading configuration"
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={self.last_status}")

    def stopping(self, text: str = "stopping: draining sessions and inference") -> None:
        """Tell systemd shutdown has begun."""
        self.last_status = ascii_status(text)
        self._send("STOPPING=1", f"STATUS={self.last_status}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask systemd for `seconds` more to finish starting (EXTEND_TIMEOUT_USEC)."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        """Ping the systemd watchdog."""
        self._send("WATCHDOG=1")

    def watchdog_trigger(self) -> None:
        """Ask systemd to treat this as a watchdog failure now (systemd >= 251; older ones wait for the period)."""
        self._send("WATCHDOG=trigger")

    def close(self) -> None:
        """Release the socket."""
        sock = self._notifier.socket
        if sock is not None:
            sock.close()
        self.enabled = False
