"""Stable device identity: the provisioned device-id file, else a hash of /etc/machine-id."""

from __future__ import annotations

import hashlib
import logging
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEVICE_ID_FILE = Path("/var/lib/edge-agent/device-id")
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this box is on the network."""

    device_id: str
    hostname: str


def _read_first_line(path: Path) -> str | None:
    try:
        line = path.read_text(encoding="ascii", errors="replace").strip().splitlines()
    except OSError:
        return None
    return line[0].strip() if line and line[0].strip() else None


def device_id(id_file: Path = DEVICE_ID_FILE, machine_id_files: tuple[Path, ...] = MACHINE_ID_FILES) -> str:
    """The provisioned id if present; else a 16-hex-digit hash of the machine id (not the raw id, which is secret-ish)."""
    provisioned = _read_first_line(id_file)
    if provisioned:
        return provisioned
    for path in machine_id_files:
        machine = _read_first_line(path)
        if machine:
            return hashlib.sha256(f"edge-agent:{machine}".encode()).hexdigest()[:16]
    log.warning("no %s and no machine-id; deriving the device id from the MAC address", id_file)
    return hashlib.sha256(f"edge-agent:{uuid.getnode():012x}".encode()).hexdigest()[:16]


def local_identity() -> Identity:
    """Device id and short host name of this machine."""
    return Identity(device_id=device_id(), hostname=socket.gethostname().split(".")[0] or "edge-agent")
