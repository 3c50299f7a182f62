"""Access checks shared by WS, SSE and the HTTP API: bearer token, browser Origin, CORS, the peer's address.

Public without a token (fleet tooling): /livez, /readyz, /healthz (no client ids in it) and the viewer page.
Everything else that reads or sends frames or names clients needs the token when one is configured.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

from .config import ServerConfig

CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID"
CORS_MAX_AGE = "600"


def _given_token(request: web.Request) -> bytes:
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
    # Headers are decoded with surrogateescape: invalid UTF-8 must compare as a wrong token, not raise.
    return given.encode("utf-8", "surrogateescape")


def token_ok(request: web.Request, token: str | None) -> bool:
    """True when no token is configured or the request carries it (header, or ?token= for browsers)."""
    if token is None:
        return True
    return hmac.compare_digest(_given_token(request), token.encode())


def any_token_ok(request: web.Request, *tokens: str | None) -> bool:
    """True when the request carries one of the configured tokens (None entries are ignored)."""
    given = _given_token(request)
    return any(hmac.compare_digest(given, t.encode()) for t in tokens if t is not None)


def _own_origin(request: web.Request, origin: str) -> bool:
    """The page was served by this agent (directly or through a proxy that forwards Host)."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    host = request.headers.get("X-Forwarded-Host") if _from_proxy(request) else None
    return netloc != "" and netloc.lower() in {h.lower() for h in (request.host, host) if h}


def origin_ok(request: web.Request, allowed: list[str]) -> bool:
    """True without Origin (not a browser), from our own origin, or when allowed_origins lists it or '*'."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return _own_origin(request, origin)


def access_problem(request: web.Request, server: ServerConfig) -> tuple[int, str] | None:
    """(HTTP status, reason) when the request may not use the API, else None."""
    if not origin_ok(request, server.allowed_origins):
        return 403, f"origin {request.headers.get('Origin')!r} is not allowed (server.allowed_origins)"
    if not token_ok(request, server.auth_token):
        return 401, "missing or wrong bearer token"
    return None


def deny(status: int, reason: str) -> web.Response:
    """JSON error response for a refused HTTP request."""
    headers = {"WWW-Authenticate": 'Bearer realm="edge-agent"'} if status == 401 else None
    code = "unauthorized" if status == 401 else "forbidden"
    return web.json_response({"error": {"code": code, "message": reason}}, status=status, headers=headers)


async def answer_and_close(request: web.Request, resp: web.StreamResponse) -> None:
    """Send the reply, then close at once: aiohttp would otherwise linger reading an unread body."""
    resp.force_close()
    await resp.prepare(request)
    await resp.write_eof()
    if request.transport is not None:
        request.transport.close()


def _from_proxy(request: web.Request) -> bool:
    remote = request.remote
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def peer_address(request: web.Request) -> str:
    """The client's address; behind a local reverse proxy (a loopback peer) the last X-Forwarded-For hop."""
    if _from_proxy(request):
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass  # absent or not an address: the proxy itself is the peer
    return request.remote or "unknown"


def is_loopback_host(host: str) -> bool:
    """True when a listen address only reaches this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(server: ServerConfig) -> str | None:
    """Why this server is open to the network, or None when it is not."""
    if server.auth_token is not None or is_loopback_host(server.host):
        return None
    return (
        f"listening on {server.host} without a token: anyone on the network can stream frames and read "
        "detections; set server.token_file (the .deb does) or listen on 127.0.0.1"
    )


def cors_headers(request: web.Request, allowed: list[str]) -> CIMultiDict[str]:
    """CORS response headers for a listed cross-origin request (none for our own origin or others)."""
    origin = request.headers.get("Origin")
    headers: CIMultiDict[str] = CIMultiDict()
    if origin is None or not ("*" in allowed or origin in allowed) or _own_origin(request, origin):
        return headers
    if not (origin.isascii() and origin.isprintable()):
        return headers  # never echo bytes a response header cannot carry
    headers["Access-Control-Allow-Origin"] = origin
    headers["Vary"] = "Origin"
    headers["Access-Control-Allow-Credentials"] = "true"
    if request.method == "OPTIONS":
        headers["Access-Control-Allow-Methods"] = CORS_METHODS
        headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return headers
