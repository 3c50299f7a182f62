"""Hazard rules: which detections trigger which rule, and debounced started/ended transitions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import HazardRule
from ..events import HazardEvent
from ..inference.contract import Detection, DetectParams, Frame

Point = tuple[float, float]


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting; points on an edge may fall either way."""
    x, y = point
    inside = False
    j = len(polygon) - 1
    for i, (xi, yi) in enumerate(polygon):
        xj, yj = polygon[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def rule_matches(rule: HazardRule, det: Detection, image_size: tuple[int, int]) -> bool:
    """True when one detection satisfies the rule's class, confidence and zone."""
    if det.label not in rule.classes or det.confidence < rule.min_confidence:
        return False
    if rule.zone is None:
        return True
    w, h = image_size
    x1, _, x2, y2 = det.box
    # The bottom centre of the box is where an object stands on the ground.
    foot = ((x1 + x2) / 2 / max(w, 1), y2 / max(h, 1))
    return point_in_polygon(foot, rule.zone)


def triggered_rules(
    rules: Sequence[HazardRule], detections: Sequence[Detection], image_size: tuple[int, int]
) -> list[tuple[HazardRule, list[int]]]:
    """Each rule with the indices of the detections that trigger it (rules with none are left out)."""
    found = []
    for rule in rules:
        hits = [i for i, d in enumerate(detections) if rule_matches(rule, d, image_size)]
        if hits:
            found.append((rule, hits))
    return found


def judged_and_shown(
    found: Sequence[Detection], confidence: float | None, classes: frozenset[int] | None, server: float
) -> tuple[Sequence[Detection], Sequence[Detection]]:
    """The detections hazard rules judge (server threshold) and those a peer sees (its own filters)."""
    if confidence is None and classes is None:
        return found, found
    judged = [d for d in found if d.confidence >= server]
    shown = [
        d
        for d in found
        if (confidence is None or d.confidence >= confidence) and (classes is None or d.class_id in classes)
    ]
    return judged, shown


def reindex(triggered: list[dict[str, Any]], judged: Sequence[Detection], shown: Sequence[Detection]) -> None:
    """Make each triggered rule's detection indices point into what the peer sees."""
    if judged is shown:
        return
    where = {id(d): i for i, d in enumerate(shown)}
    for entry in triggered:
        entry["detections"] = [where[id(judged[i])] for i in entry["detections"] if id(judged[i]) in where]


def engine_params(confidence: float | None, iou: float | None, server: float) -> DetectParams:
    """What inference runs with for a peer's filters: never above the server's own threshold, all classes."""
    return DetectParams(confidence=None if confidence is None else min(confidence, server), iou=iou)


def describe(rule: HazardRule, hits: list[int], detections: Sequence[Detection]) -> dict[str, Any]:
    """JSON entry of a triggered rule: its name, the triggering detections and the top confidence."""
    top = max(detections[i].confidence for i in hits)
    return {"rule": rule.name, "detections": hits, "confidence": round(top, 4)}


@dataclass(slots=True)
class _RuleState:
    hits: int = 0
    misses: int = 0
    active: bool = False


class HazardTracker:
    """Per-source debouncing: a rule starts after min_frames hits and ends after clear_frames misses."""

    def __init__(self, source_id: str, rules: Sequence[HazardRule]) -> None:
        self.source_id = source_id
        self.rules = list(rules)
        self._states = [_RuleState() for _ in self.rules]

    @property
    def active(self) -> list[str]:
        """Names of the rules currently active."""
        return [r.name for r, s in zip(self.rules, self._states, strict=False) if s.active]

    def update(
        self,
        detections: Sequence[Detection],
        image_size: tuple[int, int],
        frame_id: int | None = None,
        frame: Frame | None = None,
    ) -> tuple[list[dict[str, Any]], list[HazardEvent]]:
        """Evaluate one frame: the rules it triggers (for the reply) and any transitions."""
        triggered: list[dict[str, Any]] = []
        events: list[HazardEvent] = []
        if not self.rules:
            return triggered, events
        hits_by_rule = {id(rule): hits for rule, hits in triggered_rules(self.rules, detections, image_size)}
        for rule, state in zip(self.rules, self._states, strict=False):
            hits = hits_by_rule.get(id(rule), [])
            if self._step(rule, state, bool(hits)):
                started = state.active
                reason = f"{state.hits} consecutive frames" if started else f"clear for {state.misses} frames"
                events.append(
                    HazardEvent(
                        self.source_id,
                        rule.name,
                        "started" if started else "ended",
                        frame_id,
                        reason,
                        tuple(detections[i] for i in hits),
                        frame if started else None,
                    )
                )
            if hits:
                triggered.append({**describe(rule, hits, detections), "active": state.active})
        return triggered, events

    @staticmethod
    def _step(rule: HazardRule, state: _RuleState, hit: bool) -> bool:
        """Count a hit or miss; True when the rule's state changed."""
        if hit:
            state.hits += 1
            state.misses = 0
            if not state.active and state.hits >= rule.min_frames:
                state.active = True
                return True
        else:
            state.misses += 1
            state.hits = 0
            if state.active and state.misses >= rule.clear_frames:
                state.active = False
                return True
        return False

    def end_all(self, reason: str) -> list[HazardEvent]:
        """End every active hazard (e.g. the client disconnected)."""
        events = []
        for rule, state in zip(self.rules, self._states, strict=False):
            if state.active:
                events.append(HazardEvent(self.source_id, rule.name, "ended", None, reason))
            state.hits = state.misses = 0
            state.active = False
        return events
