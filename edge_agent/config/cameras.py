"""The `[[cameras]]` config section: cameras the box pulls frames from itself (RTSP, MJPEG/HTTP, V4L2, files).

Credentials may sit in the URL or in `password_file`; they never leave this module unmasked except to the
reader that connects (`CameraConfig.connect_url`, `credentials`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_serializer, field_validator

CAMERA_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")  # the same alphabet as a WebSocket client_id
NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
MASK = "***"


class CameraConfig(BaseModel):
    """One camera: its id is the client id used in SSE, hazards, metrics and health."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True)

    id: str = Field(..., description="Client id of the camera (1-64 of A-Z a-z 0-9 . _ : @ -).")
    url: str = Field(
        ...,
        description="rtsp://, rtsps://, http(s):// (MJPEG multipart or a JPEG snapshot URL), /dev/videoN, "
        "or a video file path (files loop).",
    )
    enabled: bool = Field(True, description="Watch this camera.")
    fps: float | None = Field(None, gt=0, le=240, description="Most frames per second sent to inference.")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds to connect, and without a frame before the stream is stalled.",
    )
    password_file: str | None = Field(
        None, description="File holding the password (first line) for the user named in the URL."
    )

    @field_validator("id")
    @classmethod
    def _id_syntax(cls, value: str) -> str:
        if not CAMERA_ID.fullmatch(value):
            raise ValueError("expected 1-64 of A-Z a-z 0-9 . _ : @ -")
        return value

    @field_validator("url")
    @classmethod
    def _url_kind(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.lower()
        if scheme in NETWORK_SCHEMES:
            if not urlsplit(value).hostname:
                raise ValueError(f"{masked(value)}: no host")
            return value
        if "://" in value:
            raise ValueError(
                f"unsupported scheme {scheme!r}: expected rtsp, rtsps, http, https, /dev/videoN or a file path"
            )
        if not value.startswith("/dev/video") and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator("password_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"file not found or not readable: {value}")
        return value

    @field_serializer("url")
    def _masked_url(self, value: str) -> str:
        return masked(value)  # `config show`, `/v1/info` and any dump never carry the password

    @property
    def kind(self) -> Literal["rtsp", "http", "device", "file"]:
        """How frames are pulled: PyAV for rtsp/device/file, aiohttp for http(s)."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme.startswith("rtsp"):
            return "rtsp"
        if scheme.startswith("http"):
            return "http"
        return "device" if self.url.startswith("/dev/video") else "file"

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return masked(self.url)

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) from the URL and password_file, or None."""
        parts = urlsplit(self.url)
        if parts.username is None:
            return None
        password = unquote(parts.password or "")
        if self.password_file is not None:
            password = Path(self.password_file).read_text().splitlines()[0] if password == "" else password
        return unquote(parts.username), password

    def connect_url(self) -> str:
        """The URL with the credentials to connect with (for PyAV); never log it."""
        creds = self.credentials()
        if creds is None or self.kind == "http":
            return self.url
        parts = urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[1]
        netloc = f"{quote(creds[0], safe='')}:{quote(creds[1], safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def without_credentials(self) -> str:
        """The URL with no user info (aiohttp gets the credentials separately)."""
        parts = urlsplit(self.url)
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def masked(url: str) -> str:
    """The URL with any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None or "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:{MASK}@{host}", parts.path, parts.query, parts.fragment))


def _unique_ids(cameras: list[CameraConfig]) -> list[CameraConfig]:
    seen: set[str] = set()
    for cam in cameras:
        if cam.id in seen:
            raise ValueError(f"duplicate camera id {cam.id!r}")
        seen.add(cam.id)
    return cameras


Cameras = Annotated[list[CameraConfig], AfterValidator(_unique_ids)]

# For the documented default config file: there are no cameras by default.
CAMERAS_EXAMPLE = """\
# Cameras the box watches itself (none by default). One [[cameras]] table per camera:
# [[cameras]]
# id = "dock-1"                              # client id in SSE, hazards, metrics, /healthz
# url = "rtsp://admin@192.0.2.10:554/stream1" # rtsp(s)://, http(s):// MJPEG or snapshot, /dev/videoN, a file
# password_file = "/etc/edge-agent/dock-1.password"  # or the password in the URL (always shown masked)
# enabled = true
# fps = 10                                   # cap on frames per second sent to inference
# rtsp_transport = "tcp"                     # or "udp"
# timeout = 10.0                             # seconds to connect, and without a frame before it is stalled
"""
