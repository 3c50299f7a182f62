"""GET /v1/events and the snapshot endpoint on a real server: token rules, paging, filters, bad input."""

from __future__ import annotations

import simplejpeg

from edge_agent.events.mqtt import MQTT
from tests.support.hazard_frames import hazard_cycles
from tests.support.mosquitto import free_port
from tests.support.streams import Serve, SseReader, ov_cache, serve

__all__ = ["ov_cache", "serve"]


async def test_history_pages_filters_snapshots_and_token(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(server__token="t0ken", streaming__max_fps=240.0)
    auth = {"Authorization": "Bearer t0ken"}
    assert (await client.get("/v1/events")).status == 401
    assert (await client.get("/v1/events?token=wrong")).status == 401
    sse_resp = await client.get("/stream/events/cam-1", headers=auth)
    sse = SseReader(sse_resp)
    await hazard_cycles(client, photos, 2, "cam-1", token="t0ken")
    await hazard_cycles(client, photos, 1, "cam-2", token="t0ken")
    started_sse = (await sse.until("hazard"))["json"]
    ended_sse = (await sse.until("hazard"))["json"]
    sse_resp.close()
    # SSE hazard events name their snapshot: the start's id, and none for an end.
    assert started_sse["state"] == "started" and started_sse["snapshot"] == started_sse["event_id"]
    assert ended_sse["state"] == "ended" and ended_sse["snapshot"] is None
    body = await (await client.get("/v1/events?limit=4", headers=auth)).json()
    first = body["events"]
    assert [e["source"] for e in first] == ["cam-2", "cam-2", "cam-1", "cam-1"] and body["next"] is not None
    more = await (await client.get(f"/v1/events?limit=4&before={body['next']}", headers=auth)).json()
    assert [e["state"] for e in more["events"]] == ["ended", "started"] and more["next"] is None
    seqs = [e["seq"] for e in first + more["events"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 6
    only = await (await client.get("/v1/events?source=cam-1&rule=person", headers=auth)).json()
    assert len(only["events"]) == 4 and {e["source"] for e in only["events"]} == {"cam-1"}
    assert (await (await client.get("/v1/events?rule=nope", headers=auth)).json())["events"] == []
    start = next(e for e in first if e["state"] == "started")
    oldest = more["events"][-1]
    assert (oldest["id"], oldest["snapshot"]) == (started_sse["event_id"], started_sse["event_id"])
    url = f"/v1/events/{start['snapshot']}/snapshot.jpg"
    assert (await client.get(url)).status == 401
    resp = await client.get(url, headers=auth)
    assert resp.status == 200
    assert simplejpeg.decode_jpeg(await resp.read()).shape[:2] == (1080, 810)
    for bad in ("limit=0", "limit=201", "limit=x", "before=y", "source=" + "s" * 129):
        assert (await client.get(f"/v1/events?{bad}", headers=auth)).status == 400, bad
    assert (await client.get("/v1/events/..%2F..%2Fetc/snapshot.jpg", headers=auth)).status in (400, 404)
    assert (await client.get("/v1/events/0123456789abcdef/snapshot.jpg", headers=auth)).status == 404
    assert (await client.get("/v1/events/XYZ/snapshot.jpg", headers=auth)).status == 400


async def test_outbox_bound_drops_oldest_and_health_warns(serve: Serve, photos: dict[str, bytes]) -> None:
    # Nobody listens on the port: every hazard message waits on disk, and the bound is small.
    client = await serve(
        mqtt__enabled=True,
        mqtt__host="127.0.0.1",
        mqtt__port=free_port(),
        mqtt__queue_max_events=3,
        mqtt__reconnect_max=0.5,
        streaming__max_fps=240.0,
    )
    await hazard_cycles(client, photos, 2, "cam-1")
    svc = client.app[MQTT]
    await svc.async_store()
    # 1 OFF when the source appeared, then per cycle: event + ON + snapshot, event + OFF = 11 messages.
    assert (svc.outbox.count, svc.outbox.dropped) == (3, 8)
    check = (await (await client.get("/healthz")).json())["checks"]["mqtt:broker"][0]
    assert (
        check["status"] == "warn" and check["dropped"] == 8 and "8 hazard messages dropped" in check["output"]
    )
    assert "not connected to 127.0.0.1" in check["output"]
    metrics = await (await client.get("/metrics")).text()
    assert (
        "edge_agent_mqtt_outbox_dropped_total 8.0" in metrics
        and "edge_agent_mqtt_outbox_messages 3.0" in metrics
    )
