"""The `[server]` section: listening, the API token, browser origins and per-peer limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from .base import Section as _Section


class ServerConfig(_Section):
    host: str = Field("0.0.0.0", description="Address the HTTP/WebSocket server listens on.")
    port: int = Field(
        8080, ge=0, le=65535, description="TCP port of the HTTP/WebSocket server (0 = any free)."
    )
    token: str | None = Field(
        None,
        description="Bearer token required by WS, SSE, /v1/detect and /stream/performance (None = no token).",
    )
    token_file: str | None = Field(
        None,
        description="File holding the bearer token, read at start and reload (the .deb's unit sets /etc/edge-agent/token); `token` wins.",
    )
    health_requires_token: bool = Field(
        False, description="Also require the token for /livez, /readyz, /healthz, /metrics and /v1/info."
    )
    metrics_token: str | None = Field(
        None, description="A separate bearer token that may read /metrics (for a scraper)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser Origins besides the agent's own allowed on the API (CORS); ['*'] = any origin.",
    )
    max_sessions_per_peer: int = Field(
        4, ge=1, le=1024, description="Most WebSocket sessions one peer address may hold."
    )
    max_connections_per_peer: int = Field(
        64, ge=1, le=65536, description="Most open HTTP connections (any kind) one peer address may hold."
    )
    first_frame_timeout: float = Field(
        10.0, gt=0, le=3600, description="Seconds a new WebSocket session may take to send its first frame."
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a client may take to send a request body (or request headers).",
    )
    shutdown_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds to drain sessions and in-flight inference on SIGTERM."
    )
    _file_token: str | None = PrivateAttr(None)

    @field_validator("token", "metrics_token")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        # An empty token used to mean "auth off" while clients sending one got 401.
        if value is not None and (not value.strip() or value != value.strip()):
            raise ValueError("must not be empty or padded with spaces (leave it unset for no token)")
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> ServerConfig:
        self._file_token = None
        if self.token_file is None or self.token is not None:  # an explicit token wins
            return self
        self._file_token = read_token_file(Path(self.token_file))
        return self

    @property
    def auth_token(self) -> str | None:
        """The bearer token in force: `token`, or the contents of `token_file`."""
        return self.token if self.token is not None else self._file_token


def read_token_file(path: Path) -> str:
    """The token in a token file (surrounding whitespace ignored), or ValueError with the reason."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"token_file {path} does not exist") from None
    except PermissionError:
        raise ValueError(f"token_file {path}: permission denied") from None
    except IsADirectoryError:
        raise ValueError(f"token_file {path} is a directory") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"token_file {path} is not ASCII text") from None
    if not token:
        raise ValueError(f"token_file {path} is empty")
    if any(c.isspace() for c in token):
        raise ValueError(f"token_file {path} must hold one token without spaces")
    return token
