"""Config sections of events leaving the process: the hazard history with snapshots, and MQTT."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from .base import Section as _Section

_TOPIC_PREFIX = re.compile(r"[^#+\x00]+")


def default_state_dir() -> Path:
    """systemd's $STATE_DIRECTORY (the unit's StateDirectory=), else $XDG_STATE_HOME or ~/.local/state."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-agent"


class EventsConfig(_Section):
    state_dir: str = Field(
        "auto",
        description="Directory of the hazard history, snapshots and MQTT queue; 'auto' = $STATE_DIRECTORY "
        "(/var/lib/edge-agent under systemd), else $XDG_STATE_HOME/edge-agent or ~/.local/state/edge-agent.",
    )
    history_size: int = Field(
        1000, ge=1, le=1_000_000, description="Hazard events kept for GET /v1/events (oldest removed first)."
    )
    snapshots: bool = Field(True, description="Save the frame that started a hazard, with its boxes drawn.")
    snapshot_max_count: int = Field(500, ge=1, le=1_000_000, description="Most snapshots kept on disk.")
    snapshot_max_bytes: int = Field(
        100 << 20, ge=1 << 20, description="Most bytes of snapshots kept on disk (oldest removed first)."
    )
    snapshot_quality: int = Field(85, ge=10, le=100, description="JPEG quality of snapshots.")

    def state_path(self) -> Path:
        """The state directory in force."""
        return default_state_dir() if self.state_dir == "auto" else Path(self.state_dir)


class MqttConfig(_Section):
    enabled: bool = Field(
        False, description="Publish events, state and Home Assistant discovery to a broker."
    )
    host: str = Field("localhost", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual with TLS).")
    tls: bool = Field(False, description="Connect with TLS, verifying the broker's certificate.")
    tls_ca_file: str | None = Field(
        None, description="CA bundle for the broker's certificate; none = system CAs."
    )
    tls_cert_file: str | None = Field(
        None, description="Client certificate (PEM) for brokers that require one."
    )
    tls_key_file: str | None = Field(None, description="Private key (PEM) of the client certificate.")
    username: str | None = Field(None, description="Broker user name; none = anonymous.")
    password_file: str | None = Field(None, description="File whose first line is the broker password.")
    client_id: str | None = Field(None, description="MQTT client id; default: the agent id.")
    topic_prefix: str | None = Field(None, description="Topic prefix; default: edge-agent/<agent id>.")
    qos: int = Field(1, ge=0, le=2, description="QoS of every message (1 = at least once, acknowledged).")
    detections_interval: float = Field(
        1.0, ge=0.05, le=3600, description="Seconds between detection summaries of one source (rate cap)."
    )
    health_interval: float = Field(30.0, ge=1, le=3600, description="Seconds between health publications.")
    keepalive: int = Field(
        30, ge=5, le=3600, description="MQTT keep-alive in seconds (last will fires after ~1.5x)."
    )
    reconnect_max: float = Field(
        30.0,
        ge=0.1,
        le=3600,
        description="Longest wait between connection attempts (backoff doubles up to it).",
    )
    discovery: bool = Field(True, description="Publish Home Assistant MQTT discovery configs (retained).")
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant discovery prefix."
    )
    snapshots: bool = Field(True, description="Publish each hazard's snapshot (binary, retained per source).")
    untracked_sources: str = Field(
        r"client-[0-9a-f]{8}",
        description="Regex of source ids that get only <prefix>/events messages: no entities, no retained "
        "topics (default: the ids the server makes up for WebSocket clients without a client_id).",
    )
    forget_sources_after: float = Field(
        0.0,
        ge=0,
        description="Seconds after a source was last seen when its Home Assistant entities and retained "
        "topics are removed; 0 = keep them.",
    )
    queue_max_events: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Hazard messages kept on disk while the broker is unreachable.",
    )
    queue_max_bytes: int = Field(
        64 << 20, ge=1 << 16, description="Bytes of hazard messages kept on disk (oldest dropped past it)."
    )

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip("/")
        if not value or not _TOPIC_PREFIX.fullmatch(value):
            raise ValueError("a topic prefix is non-empty and has no '#', '+' or NUL")
        return value

    @field_validator("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"cannot read {value}")
        return value

    @field_validator("untracked_sources")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if not self.tls and (self.tls_ca_file or self.tls_cert_file):
            raise ValueError("tls_ca_file/tls_cert_file need tls = true")
        return self

    def password(self) -> str | None:
        """The password from password_file (read at connect time, so a rotated file is picked up)."""
        if self.password_file is None:
            return None
        lines = Path(self.password_file).read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
