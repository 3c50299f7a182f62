"""HTTP-level guards for every route: CORS (headers and OPTIONS preflight) and open connections per peer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .access import answer_and_close, cors_headers, origin_ok, peer_address
from .runtime import AGENT

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Probes stay reachable whatever one peer does.
UNCAPPED = frozenset({"/livez", "/readyz"})


class PeerConnections:
    """Connections (aiohttp protocols) that carried a request, by peer address; closed ones drop out."""

    def __init__(self) -> None:
        self._by_peer: dict[str, set[object]] = {}

    def admit(self, peer: str, protocol: object, limit: int) -> bool:
        """Count this connection for the peer; False when the peer already holds `limit` others."""
        conns = self._by_peer.setdefault(peer, set())
        conns.difference_update([c for c in conns if getattr(c, "transport", None) is None])  # closed
        if protocol in conns:
            return True
        if len(conns) >= limit:
            return False
        conns.add(protocol)
        return True

    def prune(self) -> None:
        """Forget closed connections and peers without open ones."""
        for peer, conns in list(self._by_peer.items()):
            conns.difference_update([c for c in conns if getattr(c, "transport", None) is None])
            if not conns:
                del self._by_peer[peer]


PEERS: web.AppKey[PeerConnections] = web.AppKey("peer_connections", PeerConnections)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer CORS preflights and refuse a peer's connection beyond server.max_connections_per_peer."""
    server = request.app[AGENT].config.server
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not origin_ok(request, server.allowed_origins) or not cors_headers(
            request, server.allowed_origins
        ):
            return web.json_response(
                {"error": {"code": "forbidden", "message": "origin not listed in server.allowed_origins"}},
                status=403,
            )
        return web.Response(status=204)
    limit = server.max_connections_per_peer
    if request.path not in UNCAPPED and not request.app[PEERS].admit(
        peer_address(request), request.protocol, limit
    ):
        resp = web.json_response(
            {"error": {"code": "too_many_connections", "message": f"more than {limit} connections open"}},
            status=429,
            headers={"Retry-After": "5"},
        )
        await answer_and_close(request, resp)  # its descriptor is free again now, not after lingering
        return resp
    return await handler(request)


async def _add_cors(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: CORS headers on every response (SSE included) to a listed origin."""
    response.headers.extend(cors_headers(request, request.app[AGENT].config.server.allowed_origins))


def setup_guard(app: web.Application) -> None:
    """Install the guard middleware and the CORS response hook."""
    app[PEERS] = PeerConnections()
    app.middlewares.append(guard_middleware)
    app.on_response_prepare.append(_add_cors)
