"""`edge-agent discover --prometheus-sd FILE [--watch]`: a Prometheus file_sd JSON of the agents on the LAN."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .discover import Agent, discover


def targets(agents: list[Agent]) -> list[dict[str, Any]]:
    """One file_sd target group per agent: its address:port and labels (agent id, name, model, device)."""
    groups = []
    for a in sorted(agents, key=lambda a: a.txt.get("id", a.name)):
        if not a.addresses:
            continue
        t = a.txt
        groups.append(
            {
                "targets": [f"{a.addresses[0]}:{a.port}"],
                "labels": {
                    "agent_id": t.get("id", ""),
                    "agent_name": a.name,
                    "model": t.get("model", ""),
                    "device": t.get("device", ""),
                    "version": t.get("version", ""),
                },
            }
        )
    return groups


def write_atomic(path: Path, groups: list[dict[str, Any]]) -> bool:
    """Write the file beside itself and rename over it (Prometheus never reads half a file); False if unchanged."""
    text = json.dumps(groups, indent=2) + "\n"
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


async def _loop(path: Path, timeout: float, interfaces: list[str], token: str | None, watch: bool) -> int:
    while True:
        agents = await discover(timeout, interfaces, token)
        groups = targets(agents)
        if write_atomic(path, groups):
            print(f"{path}: {len(groups)} agents", file=sys.stderr, flush=True)
        if not watch:
            return 0 if groups else 1


def run_sd(file: str, timeout: float, interfaces: list[str], token: str | None, watch: bool) -> int:
    """Browse (once, or repeatedly with watch: every `timeout` seconds) and keep FILE current."""
    path = Path(file)
    if not path.parent.is_dir():
        print(f"edge-agent discover: no directory {path.parent}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_loop(path, timeout, interfaces, token, watch))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"edge-agent discover: {exc}", file=sys.stderr)
        return 2
