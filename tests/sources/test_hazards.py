"""Hazard rules: matching (class, confidence, zone) and debounced started/ended transitions."""

from __future__ import annotations

import pytest

from edge_agent.config import HazardRule
from edge_agent.inference.contract import Detection
from edge_agent.sources.hazards import HazardTracker, point_in_polygon, rule_matches, triggered_rules

SIZE = (640, 480)
PERSON = Detection("person", 0, 0.9, (100.0, 100.0, 200.0, 400.0))  # foot at (150, 400) = (0.234, 0.833)
WEAK_PERSON = Detection("person", 0, 0.3, (100.0, 100.0, 200.0, 400.0))
CAT = Detection("cat", 15, 0.95, (300.0, 300.0, 400.0, 450.0))
LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
RIGHT_HALF = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]


def rule(**kw: object) -> HazardRule:
    base: dict[str, object] = {
        "name": "person",
        "classes": ["person"],
        "min_confidence": 0.5,
        "min_frames": 2,
        "clear_frames": 3,
    }
    base.update(kw)
    return HazardRule.model_validate(base)


@pytest.mark.parametrize(
    ("point", "inside"),
    [((0.25, 0.5), True), ((0.75, 0.5), False), ((0.49, 0.99), True), ((-0.1, 0.5), False)],
)
def test_point_in_polygon(point: tuple[float, float], inside: bool) -> None:
    assert point_in_polygon(point, LEFT_HALF) is inside


def test_triangle_zone() -> None:
    tri = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    assert point_in_polygon((0.2, 0.2), tri)
    assert not point_in_polygon((0.8, 0.8), tri)


@pytest.mark.parametrize(
    ("det", "kw", "expected"),
    [
        (PERSON, {}, True),
        (WEAK_PERSON, {}, False),
        (CAT, {}, False),
        (PERSON, {"zone": LEFT_HALF}, True),
        (PERSON, {"zone": RIGHT_HALF}, False),
        (CAT, {"classes": ["cat", "dog"], "zone": RIGHT_HALF}, True),
    ],
)
def test_rule_matches(det: Detection, kw: dict[str, object], expected: bool) -> None:
    assert rule_matches(rule(**kw), det, SIZE) is expected


def test_zone_uses_bottom_centre_of_box() -> None:
    # Head in the top band, feet below it: only the feet count.
    top_band = [(0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)]
    assert not rule_matches(rule(zone=top_band), PERSON, SIZE)
    standing_in_top = Detection("person", 0, 0.9, (100.0, 10.0, 200.0, 200.0))
    assert rule_matches(rule(zone=top_band), standing_in_top, SIZE)


def test_triggered_rules_lists_indices() -> None:
    rules = [rule(), rule(name="pets", classes=["cat"])]
    found = triggered_rules(rules, [CAT, PERSON, WEAK_PERSON], SIZE)
    assert [(r.name, hits) for r, hits in found] == [("person", [1]), ("pets", [0])]


def test_transitions_debounced() -> None:
    tracker = HazardTracker("cam-1", [rule(min_frames=2, clear_frames=3)])
    seen: list[tuple[int, str]] = []
    frames = [[PERSON], [], [PERSON], [PERSON], [PERSON], [], [PERSON], [], [], [], [PERSON]]
    for i, dets in enumerate(frames, start=1):
        triggered, events = tracker.update(dets, SIZE, frame_id=i)
        seen += [(e.frame_id or 0, e.state) for e in events]
        assert bool(triggered) == bool(dets)
    # A single hit does not start; two in a row do; one miss does not end; three in a row do.
    assert seen == [(4, "started"), (10, "ended")]
    assert tracker.active == []


def test_reply_entry_reports_active_state() -> None:
    tracker = HazardTracker("cam-1", [rule(min_frames=2)])
    first, _ = tracker.update([PERSON], SIZE)
    second, events = tracker.update([PERSON], SIZE)
    assert first == [{"rule": "person", "detections": [0], "confidence": 0.9, "active": False}]
    assert second[0]["active"] is True and events[0].state == "started"
    # The start carries its source and the detections that triggered it (for snapshots and brokers).
    assert events[0].source_id == "cam-1" and events[0].detections == (PERSON,)
    assert tracker.active == ["person"]


def test_end_all_on_disconnect() -> None:
    tracker = HazardTracker("cam-1", [rule(min_frames=1), rule(name="cat", classes=["cat"], min_frames=1)])
    tracker.update([PERSON], SIZE)
    events = tracker.end_all("client disconnected")
    assert [(e.rule, e.state, e.reason) for e in events] == [("person", "ended", "client disconnected")]
    assert tracker.active == []
    assert tracker.end_all("again") == []


def test_rules_are_independent() -> None:
    tracker = HazardTracker(
        "cam-1", [rule(min_frames=1, clear_frames=1), rule(name="cat", classes=["cat"], min_frames=1)]
    )
    _, events = tracker.update([PERSON, CAT], SIZE, 1)
    assert sorted((e.rule, e.state) for e in events) == [("cat", "started"), ("person", "started")]
    _, events = tracker.update([CAT], SIZE, 2)
    assert [(e.rule, e.state) for e in events] == [("person", "ended")]
    assert tracker.active == ["cat"]
