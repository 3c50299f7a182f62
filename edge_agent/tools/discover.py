"""`edge-agent discover`: browse mDNS for agents and show address, TXT and /healthz status of each."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

AGENT_TYPE = "_edge-agent._tcp.local."
RESOLVE_MS = 3000


@dataclass
class Agent:
    """One agent found on the network."""

    name: str
    host: str
    addresses: list[str]
    port: int
    txt: dict[str, str]
    health: str = "unknown"
    health_detail: dict[str, Any] = field(default_factory=dict)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="edge-agent discover", description="List Edge Agents advertised over mDNS on the LAN."
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to browse (default 3)")
    parser.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="ADDR",
        help="IPv4 address to browse on (repeatable)",
    )
    parser.add_argument("--token", help="bearer token for agents whose health endpoints require it")
    parser.add_argument("--json", action="store_true", help="print one JSON array (for fleet tooling)")
    parser.add_argument(
        "--prometheus-sd", metavar="FILE", help="write a Prometheus file_sd JSON of the agents found"
    )
    parser.add_argument(
        "--watch", action="store_true", help="with --prometheus-sd: keep browsing, rewrite on change"
    )
    args = parser.parse_args(argv)
    if args.watch and not args.prometheus_sd:
        parser.error("--watch needs --prometheus-sd FILE")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


async def _resolve(zc: Zeroconf, name: str) -> AsyncServiceInfo | None:
    info = AsyncServiceInfo(AGENT_TYPE, name)
    if not await info.async_request(zc, RESOLVE_MS) or info.port is None:
        return None
    return info


def _agent(zc: Zeroconf, info: AsyncServiceInfo) -> Agent:
    # Reload from the cache: an answer that arrived in parts (responders rate-limit records they
    # multicast within the last second) completes while the browse window is open.
    info.load_from_cache(zc)
    name = info.name
    txt = {k: v or "" for k, v in info.decoded_properties.items()}
    return Agent(
        name=name[: -len(AGENT_TYPE) - 1],
        host=(info.server or "").rstrip("."),
        addresses=sorted(info.parsed_addresses(IPVersion.V4Only), key=ipaddress.IPv4Address),
        port=info.port or 0,
        txt=txt,
    )


async def _check_health(session: aiohttp.ClientSession, agent: Agent, token: str | None) -> None:
    path = agent.txt.get("health", "/healthz")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    errors = []
    for address in agent.addresses:
        try:
            async with session.get(f"http://{address}:{agent.port}{path}", headers=headers) as resp:
                if resp.status == 401:
                    agent.health = "unauthorized"
                    return
                body = await resp.json(content_type=None)
                agent.health = str(body.get("status", f"http {resp.status}"))
                agent.health_detail = {"http_status": resp.status, "address": address}
                return
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            errors.append(f"{address}: {exc.__class__.__name__}")
    agent.health = "unreachable"
    agent.health_detail = {"errors": errors}


async def discover(timeout: float, interfaces: list[str], token: str | None = None) -> list[Agent]:
    """Browse for `timeout` seconds, resolve every agent and fetch its /healthz."""
    zc_args: dict[str, Any] = {"ip_version": IPVersion.V4Only}
    if interfaces:
        zc_args["interfaces"] = interfaces
    resolving: dict[str, asyncio.Task[AsyncServiceInfo | None]] = {}
    async with AsyncZeroconf(**zc_args) as aiozc:

        def on_change(
            zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is not ServiceStateChange.Removed and name not in resolving:
                resolving[name] = asyncio.ensure_future(_resolve(zeroconf, name))

        browser = AsyncServiceBrowser(aiozc.zeroconf, [AGENT_TYPE], handlers=[on_change])
        await asyncio.sleep(timeout)
        await browser.async_cancel()
        infos = await asyncio.gather(*resolving.values())
        found = [_agent(aiozc.zeroconf, info) for info in infos if info is not None]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        await asyncio.gather(*(_check_health(session, a, token) for a in found))
    return sorted(found, key=lambda a: a.name)


def _table(agents: list[Agent]) -> str:
    rows = [("NAME", "ADDRESS", "ID", "VERSION", "MODEL", "DEVICE", "AUTH", "HEALTH")]
    for a in agents:
        t = a.txt
        address = ",".join(f"{ip}:{a.port}" for ip in a.addresses) or f"{a.host}:{a.port}"
        rows.append(
            (
                a.name,
                address,
                t.get("id", "?"),
                t.get("version", "?"),
                t.get("model", "?"),
                t.get("device", "?"),
                t.get("auth", "?"),
                a.health,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def main(argv: list[str]) -> int:
    """Entry point of `edge-agent discover`: 0 when agents were found, 1 when none answered."""
    args = _parse(argv)
    if args.prometheus_sd:
        from .prometheus_sd import run_sd

        return run_sd(args.prometheus_sd, args.timeout, args.interface, args.token, args.watch)
    try:
        agents = asyncio.run(discover(args.timeout, args.interface, args.token))
    except (OSError, ValueError) as exc:
        print(f"edge-agent discover: cannot browse mDNS: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(a) for a in agents], indent=2))
    elif agents:
        print(_table(agents))
    if not agents:
        print(f"no Edge Agents answered within {args.timeout:g}s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
