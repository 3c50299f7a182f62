"""Typed events of the hub: what happened at a source, with its JSON form computed once."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Literal

from ..inference.contract import Detection, Frame, Result

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


def dumps(obj: dict[str, Any]) -> str:
    """Compact JSON, as sent on the wire."""
    return _ENCODER.encode(obj)


def _with_source(source_id: str, obj: dict[str, Any]) -> str:
    return dumps({"client_id": source_id, **obj})


@dataclass(frozen=True)
class HubEvent:
    """Base of every event: the source it concerns and when it happened (wall clock)."""

    kind: ClassVar[str]
    source_id: str

    @cached_property
    def data(self) -> str:
        """The JSON text of the event (SSE `data:`), built once however many subscribers read it."""
        return _with_source(self.source_id, self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The event's fields (without the source id)."""
        raise NotImplementedError


@dataclass(frozen=True)
class DetectionsEvent(HubEvent):
    """A processed frame: its detections and the hazard rules they triggered; `reply` is the reply's JSON."""

    kind: ClassVar[str] = "detections"
    frame_id: int | None
    result: Result
    hazards: list[dict[str, Any]]
    reply: str

    @cached_property
    def data(self) -> str:
        """The reply's text with the source id in front (no second encoding)."""
        return f'{{"client_id":{json.dumps(self.source_id)},{self.reply[1:]}'


@dataclass(frozen=True)
class HazardEvent(HubEvent):
    """A hazard rule started or ended at a source; `detections` and `frame` are what triggered a start."""

    kind: ClassVar[str] = "hazard"
    rule: str
    state: Literal["started", "ended"]
    frame_id: int | None
    reason: str
    detections: tuple[Detection, ...] = ()
    frame: Frame | None = field(default=None, repr=False, compare=False)
    time: float = field(default_factory=time.time)
    event_id: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def snapshot(self) -> str | None:
        """Id of the start's snapshot image (GET /v1/events/{id}/snapshot.jpg), None for an end."""
        return self.event_id if self.frame is not None else None

    def to_json(self) -> dict[str, Any]:
        """JSON shape of the SSE `hazard` event."""
        return {
            "rule": self.rule,
            "state": self.state,
            "frame_id": self.frame_id,
            "reason": self.reason,
            "event_id": self.event_id,
            "snapshot": self.snapshot,
        }


@dataclass(frozen=True)
class SourceEvent(HubEvent):
    """A source connected or disconnected (for a disconnect, `summary` has its figures)."""

    kind: ClassVar[str] = "session"
    state: Literal["connected", "disconnected"]
    session_id: str
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON shape of the SSE `session` event."""
        body: dict[str, Any] = {"state": self.state, "session_id": self.session_id}
        if self.reason is not None:
            body["reason"] = self.reason
        return {**body, **self.summary}


@dataclass(frozen=True)
class FpsEvent(HubEvent):
    """The adaptive FPS controller (or the client) changed a source's frame-rate limit."""

    kind: ClassVar[str] = "fps"
    fps_limit: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        """JSON shape of the SSE `fps` event."""
        return {"type": "fps", "fps_limit": self.fps_limit, "reason": self.reason}
