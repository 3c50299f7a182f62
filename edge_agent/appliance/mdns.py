"""mDNS advertisement (zeroconf asyncio API): register, re-announce on address change, goodbye on stop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from zeroconf import DNSQuestionType, IPVersion
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from .. import __version__
from ..runtime import AGENT
from .identity import Identity
from .netifs import select_addresses
from .runtime import APPLIANCE

log = logging.getLogger(__name__)

AGENT_TYPE = "_edge-agent._tcp.local."
HTTP_TYPE = "_http._tcp.local."
WS_PATH = "/stream/detection"
SSE_PATH = "/stream/events"
HEALTH_PATH = "/healthz"
ADDRESS_POLL_SECONDS = 5.0
CONFLICT_CHECK_MS = 1000
MAX_RENAMES = 50


def txt_record(app: web.Application) -> dict[str, str]:
    """TXT properties describing this agent to browsers and fleet tooling."""
    cfg = app[AGENT].config
    engine = app[AGENT].engine
    device = ",".join(engine.device.executing) if engine.device else "none"
    return {
        "version": __version__,
        "model": engine.model.name,
        "precision": engine.model.precision,
        "device": device,
        "ws": WS_PATH,
        "sse": SSE_PATH,
        "health": HEALTH_PATH,
        "path": "/",
        "auth": "token" if cfg.server.auth_token else "none",
        "id": app[APPLIANCE].identity.device_id,
    }


def _dns_label(text: str) -> str:
    """A host label zeroconf accepts: letters, digits and hyphens."""
    cleaned = "".join(c if c.isascii() and c.isalnum() else "-" for c in text.strip()).strip("-")
    return cleaned[:54] or "edge-agent"


def mdns_host(identity: Identity) -> str:
    """Our own A-record name: host name plus a device-id tag, so cloned boxes sharing a host name
    (and avahi's plain <hostname>.local) never merge their addresses under one name."""
    tag = hashlib.sha256(identity.device_id.encode()).hexdigest()[:8]
    return f"{_dns_label(identity.hostname)}-{tag}.local."


class Advertiser:
    """Keeps the two service registrations matching the current addresses, port and TXT."""

    def __init__(self, app: web.Application, poll_interval: float = ADDRESS_POLL_SECONDS) -> None:
        self._app = app
        self._poll = poll_interval
        self._zc: AsyncZeroconf | None = None
        self._infos: list[AsyncServiceInfo] = []
        self._requested = ""
        self.addresses: list[str] = []
        self.last_error: str | None = None

    @property
    def names(self) -> list[str]:
        """Fully qualified names currently registered (after any conflict renaming)."""
        return [info.name for info in self._infos]

    def _instance(self) -> str:
        cfg = self._app[AGENT].config.mdns
        return (cfg.instance_name or self._app[APPLIANCE].identity.hostname).replace(".", "-")[:63]

    def _port(self) -> int:
        ports = self._app[APPLIANCE].lifecycle.ports
        return ports[0] if ports else self._app[AGENT].config.server.port

    def _info(self, type_: str, instance: str, addresses: list[str]) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            type_,
            f"{instance}.{type_}",
            port=self._port(),
            properties=txt_record(self._app),
            server=mdns_host(self._app[APPLIANCE].identity),
            parsed_addresses=addresses,
        )

    async def _free_instance(self, zc: AsyncZeroconf, instance: str) -> str:
        """First of name, name-2, name-3... nobody answers for, asked with multicast (QM) questions.

        zeroconf's own probes are QU: their unicast answers reach only one of the sockets bound to
        port 5353 on a host, so another mDNS stack here (avahi, a browser) can swallow a conflict."""
        for n in range(1, MAX_RENAMES + 1):
            candidate = instance if n == 1 else f"{instance}-{n}"
            probe = AsyncServiceInfo(AGENT_TYPE, f"{candidate}.{AGENT_TYPE}")
            await probe.async_request(zc.zeroconf, CONFLICT_CHECK_MS, question_type=DNSQuestionType.QM)
            if probe.port is None:
                return candidate
            log.warning("mDNS: instance name %r is taken by %s; trying another", candidate, probe.server)
        return instance  # zeroconf's probing renames as a last resort

    async def _register(self, instance: str, addresses: list[str]) -> None:
        self._requested = instance
        self._zc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
        free = await self._free_instance(self._zc, instance)
        agent = self._info(AGENT_TYPE, free, addresses)
        await self._zc.async_register_service(agent, allow_name_change=True)
        # The viewer entry takes the instance name the agent entry won, so both read the same.
        won = agent.name[: -len(AGENT_TYPE) - 1]
        http = self._info(HTTP_TYPE, won, addresses)
        await self._zc.async_register_service(http, allow_name_change=True)
        self._infos = [agent, http]
        self.addresses = addresses
        log.info("mDNS: advertising %s on %s port %d", won, ", ".join(addresses), self._port())

    async def _goodbye(self) -> None:
        if self._zc is None:
            return
        zc, self._zc, self._infos, self.addresses = self._zc, None, [], []
        try:
            await zc.async_unregister_all_services()
            log.info("mDNS: sent goodbye")
        finally:
            await zc.async_close()

    def _wanted(self) -> tuple[bool, str, list[str]]:
        cfg = self._app[AGENT].config.mdns
        if not cfg.enabled:  # disabled means silent: no interface scan, nothing to report
            return False, self._instance(), []
        return True, self._instance(), select_addresses(cfg.interfaces)

    async def _refresh(self) -> None:
        """Register, re-announce or withdraw so the advertisement matches config, addresses, port and TXT."""
        enabled, instance, addresses = self._wanted()
        if self._zc is not None and (not enabled or not addresses or instance != self._requested):
            if enabled and not addresses:
                log.warning("mDNS: no usable IPv4 address left; withdrawing the advertisement")
            await self._goodbye()
        if not enabled or not addresses:
            return
        if self._zc is None:
            await self._register(instance, addresses)
            return
        fresh = [self._info(i.type, i.name[: -len(i.type) - 1], addresses) for i in self._infos]
        if addresses == self.addresses and all(
            new.decoded_properties == old.decoded_properties and new.port == old.port
            for new, old in zip(fresh, self._infos, strict=False)
        ):
            return
        if addresses != self.addresses:
            log.info("mDNS: addresses changed to %s; re-announcing", ", ".join(addresses))
            await self._zc.async_update_interfaces(addresses)
        for info in fresh:
            await self._zc.async_update_service(info)
        self._infos, self.addresses = fresh, addresses

    def _report(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self.last_error:  # once per distinct problem, not every poll
            log.warning("mDNS: advertisement failed (%s); retrying every %.0fs", text, self._poll)
        self.last_error = text

    async def run(self) -> None:
        """Advertise once the port listens; follow changes until stopping, then say goodbye."""
        life = self._app[APPLIANCE].lifecycle
        await _first(life.listening, life.stopping)
        try:
            while not life.stopping.is_set():
                life.changed.clear()
                try:
                    await self._refresh()
                except (OSError, ZeroconfError) as exc:
                    self._report(exc)
                    await self._goodbye()  # start clean next time
                else:
                    self.last_error = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_first(life.stopping, life.changed), self._poll)
        finally:
            await asyncio.shield(self._goodbye())


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of the events is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def mdns_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the advertiser for the app's lifetime; it follows mdns.enabled across reloads."""
    task = asyncio.create_task(app[APPLIANCE].advertiser.run(), name="mdns-advertiser")
    yield
    app[APPLIANCE].lifecycle.stopping.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5.0)
