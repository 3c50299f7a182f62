"""Topic names and payloads of the agent's MQTT messages (one place, documented in the README)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..types import DetectionsEvent

_UNSAFE_TOPIC = re.compile(r"[^A-Za-z0-9._:@-]")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def topic_part(text: str) -> str:
    """A name as one topic level: anything but A-Z a-z 0-9 . _ : @ - becomes '_' (no '/', '+', '#')."""
    return _UNSAFE_TOPIC.sub("_", text)[:128] or "_"


def object_id(*parts: str) -> str:
    """A Home Assistant object id / unique id part: letters, digits, '_' and '-'."""
    return "_".join(_UNSAFE_ID.sub("_", p) for p in parts)


def compact(obj: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic under one prefix."""

    prefix: str

    @property
    def availability(self) -> str:
        """Retained online/offline; the broker's last will sets offline."""
        return f"{self.prefix}/availability"

    @property
    def events(self) -> str:
        """One JSON message per hazard started/ended."""
        return f"{self.prefix}/events"

    @property
    def health(self) -> str:
        """The /healthz document, retained."""
        return f"{self.prefix}/health"

    def hazard(self, source: str, rule: str) -> str:
        """Retained ON/OFF of one rule at one source."""
        return f"{self.prefix}/{topic_part(source)}/hazard/{topic_part(rule)}"

    def detections(self, source: str) -> str:
        """Detection summaries of a source, rate-capped."""
        return f"{self.prefix}/{topic_part(source)}/detections"

    def stats(self, source: str) -> str:
        """Processed fps and inference latency of a source, retained."""
        return f"{self.prefix}/{topic_part(source)}/stats"

    def snapshot(self, source: str) -> str:
        """The latest hazard snapshot of a source (JPEG bytes, retained)."""
        return f"{self.prefix}/{topic_part(source)}/snapshot"


def detections_payload(ev: DetectionsEvent) -> bytes:
    """Counts per label and the boxes of the latest frame of a source."""
    result = ev.result
    counts = Counter(d.label for d in result.detections)
    return compact(
        {
            "source": ev.source_id,
            "frame_id": ev.frame_id,
            "image_size": list(result.image_size),
            "counts": dict(counts),
            "detections": [d.to_json() for d in result.detections],
            "hazards": [h["rule"] for h in ev.hazards if h.get("active")],
        }
    )


class SourceRate:
    """Frames and latency of one source since its last summary (the rate cap's bookkeeping)."""

    __slots__ = ("frames", "last", "latency")

    def __init__(self, now: float) -> None:
        self.last = now
        self.frames = 0
        self.latency = 0.0

    def add(self, latency_ms: float) -> None:
        """Count one processed frame."""
        self.frames += 1
        self.latency += latency_ms

    def take(self, now: float) -> dict[str, float]:
        """fps and mean latency since the last take, then start a new interval."""
        elapsed = max(now - self.last, 1e-6)
        stats = {
            "fps": round(self.frames / elapsed, 2),
            "latency_ms": round(self.latency / self.frames, 1) if self.frames else 0.0,
        }
        self.last, self.frames, self.latency = now, 0, 0.0
        return stats
