"""The event hub: per-source rings for resume, bounded slow subscribers, forgetting old sources."""

from __future__ import annotations

import json

import pytest

from edge_agent.events import EventHub, FpsEvent, HazardEvent, SourceEvent
from edge_agent.events.hub import Event, Subscriber


async def test_hub_ring_resume_and_all_stream() -> None:
    hub = EventHub(buffer_size=3, queue_size=10)
    for i in range(5):
        hub.publish(FpsEvent("a", float(i), "test"))
        hub.publish(FpsEvent("b", float(i), "test"))
    sub = hub.subscribe("a", last_id=5)
    # a's ring holds its last 3 events: ids 5, 7, 9; only those after 5 come back, queued first.
    assert [e.id for e in _drain(sub)] == [7, 9]
    assert hub.oldest_id("a") == 5
    sub_all = hub.subscribe(None, last_id=6)
    assert [e.id for e in _drain(sub_all)] == [7, 8, 9, 10]
    fresh = hub.subscribe("a", None)
    assert fresh.pending == 0
    hub.publish(HazardEvent("a", "person", "started", 1, "2 frames"))
    assert sub.take() is not None and sub_all.take() is not None and fresh.take() is not None
    assert sub.take() is None


def _drain(sub: Subscriber) -> list[Event]:
    out = []
    while (ev := sub.take()) is not None:
        out.append(ev)
    return out


def test_replay_is_bounded_by_the_subscriber_queue() -> None:
    """A resume from 0 over a long history queues at most queue_size events; the rest count as dropped."""
    hub = EventHub(buffer_size=1000, queue_size=8)
    for i in range(500):
        hub.publish(FpsEvent(f"c{i % 5}", float(i), "test"))
    sub = hub.subscribe(None, last_id=0)
    assert [e.id for e in _drain(sub)] == list(range(493, 501))
    assert sub.dropped == 0, "only what fits is copied: nothing to drop"
    one = hub.subscribe("c0", last_id=0)
    assert [e.id for e in _drain(one)] == [461, 466, 471, 476, 481, 486, 491, 496]


def test_gap_is_announced_only_for_this_streams_lost_events() -> None:
    """Ids are hub-wide: other clients' ids before a client's first event are not a gap for it."""
    hub = EventHub(buffer_size=3, queue_size=10)
    for i in range(58):
        hub.publish(FpsEvent("other", float(i), "test"))
    hub.publish(FpsEvent("mine", 1.0, "test"))
    assert hub.lost_after("mine", 0) is None
    assert hub.lost_after(None, 0) == 55, "the all-clients stream did lose other's old events"
    for i in range(3):
        hub.publish(FpsEvent("mine", float(i), "test"))
    assert hub.lost_after("mine", 0) == 59 and hub.lost_after("mine", 59) is None


async def test_hub_slow_subscriber_is_bounded() -> None:
    hub = EventHub(buffer_size=8, queue_size=4)
    sub = hub.subscribe("a", None)
    for i in range(1000):
        hub.publish(FpsEvent("a", float(i), "test"))
    assert sub.pending == 4 and sub.dropped == 996
    got = [await sub.get(0.1) for _ in range(4)]
    assert [json.loads(e.payload.data)["fps_limit"] for e in got if e] == [996, 997, 998, 999]
    with pytest.raises(TimeoutError):
        await sub.get(0.01)
    hub.close()
    assert await sub.get(1) is None
    late = hub.subscribe("b", None)
    assert await late.get(1) is None


def test_hub_forgets_old_clients_nobody_follows() -> None:
    hub = EventHub(buffer_size=2, queue_size=2, max_clients=3)
    hub.subscribe("kept", None)
    for i in range(10):
        hub.publish(SourceEvent(f"c{i}", "connected", "s"))
    assert hub.oldest_id("kept") is None
    assert hub.oldest_id("c0") is None and hub.oldest_id("c9") is not None
