"""Which IPv4 addresses to advertise on: configured ones, else real LAN interfaces only."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

# Container/VM bridges and veth ends: advertising these makes other hosts try unreachable addresses.
VIRTUAL_PREFIXES = (
    "docker",
    "veth",
    "br-",
    "virbr",
    "lxcbr",
    "lxdbr",
    "cni",
    "flannel",
    "cali",
    "weave",
    "vnet",
    "podman",
    "kube",
    "tap",
    "vmnet",
    "vboxnet",
)


def is_virtual(name: str) -> bool:
    """True for docker/veth/bridge-style virtual interface names."""
    return name.startswith(VIRTUAL_PREFIXES)


def _ipv4_by_interface(addrs: Mapping[str, Sequence[Any]], stats: Mapping[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, entries in addrs.items():
        st = stats.get(name)
        if st is not None and not st.isup:
            continue
        for entry in entries:
            if entry.family == socket.AF_INET:
                found.setdefault(name, []).append(entry.address)
    return found


def select_addresses(
    configured: Sequence[str],
    addrs: Mapping[str, Sequence[Any]] | None = None,
    stats: Mapping[str, Any] | None = None,
) -> list[str]:
    """IPv4 addresses to advertise on, sorted; configured entries may be addresses or interface names."""
    by_if = _ipv4_by_interface(
        psutil.net_if_addrs() if addrs is None else addrs, psutil.net_if_stats() if stats is None else stats
    )
    chosen: set[str] = set()
    if configured:
        for item in configured:
            try:
                chosen.add(str(ipaddress.IPv4Address(item)))
            except ValueError:
                chosen.update(by_if.get(item, []))
        return sorted(chosen, key=ipaddress.IPv4Address)
    for name, ips in by_if.items():
        if is_virtual(name):
            continue
        chosen.update(ip for ip in ips if not ipaddress.IPv4Address(ip).is_loopback)
    return sorted(chosen, key=ipaddress.IPv4Address)
