"""The event hub: per-source rings for resume, bounded slow subscribers, forgetting old sources."""

from __future__ import annotations

import json

import pytest

from edge_agent.events import EventHub, FpsEvent, HazardEvent, SourceEvent


async def test_hub_ring_resume_and_all_stream() -> None:
    hub = EventHub(buffer_size=3, queue_size=10)
    for i in range(5):
        hub.publish(FpsEvent("a", float(i), "test"))
        hub.publish(FpsEvent("b", float(i), "test"))
    sub, backlog = hub.subscribe("a", last_id=5)
    # a's ring holds its last 3 events: ids 5, 7, 9; only those after 5 come back.
    assert [e.id for e in backlog] == [7, 9]
    assert hub.oldest_id("a") == 5
    sub_all, backlog_all = hub.subscribe(None, last_id=6)
    assert [e.id for e in backlog_all] == [7, 8, 9, 10]
    fresh, none = hub.subscribe("a", None)
    assert none == []
    hub.publish(HazardEvent("a", "person", "started", 1, "2 frames"))
    assert sub.take() is not None and sub_all.take() is not None and fresh.take() is not None
    assert sub.take() is None


async def test_hub_slow_subscriber_is_bounded() -> None:
    hub = EventHub(buffer_size=8, queue_size=4)
    sub, _ = hub.subscribe("a", None)
    for i in range(1000):
        hub.publish(FpsEvent("a", float(i), "test"))
    assert sub.pending == 4 and sub.dropped == 996
    got = [await sub.get(0.1) for _ in range(4)]
    assert [json.loads(e.payload.data)["fps_limit"] for e in got if e] == [996, 997, 998, 999]
    with pytest.raises(TimeoutError):
        await sub.get(0.01)
    hub.close()
    assert await sub.get(1) is None
    late, _ = hub.subscribe("b", None)
    assert await late.get(1) is None


def test_hub_forgets_old_clients_nobody_follows() -> None:
    hub = EventHub(buffer_size=2, queue_size=2, max_clients=3)
    hub.subscribe("kept", None)
    for i in range(10):
        hub.publish(SourceEvent(f"c{i}", "connected", "s"))
    assert hub.oldest_id("kept") is None
    assert hub.oldest_id("c0") is None and hub.oldest_id("c9") is not None
