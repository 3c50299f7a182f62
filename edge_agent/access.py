"""Access checks shared by WS, SSE and /v1/detect: optional bearer token and allowed browser origins."""

from __future__ import annotations

import hmac

from aiohttp import web

from .config import ServerConfig


def token_ok(request: web.Request, token: str | None) -> bool:
    """True when no token is configured or the request carries it (header, or ?token= for browsers)."""
    if token is None:
        return True
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def origin_ok(request: web.Request, allowed: list[str]) -> bool:
    """True when no origins are configured, the request has no Origin (not a browser) or it is listed."""
    origin = request.headers.get("Origin")
    return not allowed or origin is None or origin in allowed


def access_problem(request: web.Request, server: ServerConfig) -> tuple[int, str] | None:
    """(HTTP status, reason) when the request may not use the streaming API, else None."""
    if not token_ok(request, server.token):
        return 401, "missing or wrong bearer token"
    if not origin_ok(request, server.allowed_origins):
        return 403, f"origin {request.headers.get('Origin')!r} is not allowed"
    return None


def deny(status: int, reason: str) -> web.Response:
    """JSON error response for a refused HTTP request."""
    headers = {"WWW-Authenticate": 'Bearer realm="edge-agent"'} if status == 401 else None
    code = "unauthorized" if status == 401 else "forbidden"
    return web.json_response({"error": {"code": code, "message": reason}}, status=status, headers=headers)
