"""Browser origins, CORS and preflight, tokens (file, empty, metrics), what stays public, the exposure warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from edge_agent.app import create_app
from edge_agent.appliance.mdns import txt_record
from edge_agent.appliance.reload import reload_config
from edge_agent.config import Config, load_config
from edge_agent.errors import ConfigError
from edge_agent.tools.token import rotate
from tests.support.streams import Serve, next_json, ov_cache, serve

__all__ = ["ov_cache", "serve"]
FOREIGN = "http://evil.example"
DASHBOARD = "http://dashboard.lan:3000"


async def test_foreign_origins_are_refused_own_origin_is_not(serve: Serve) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection", headers={"Origin": FOREIGN}) as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert "origin" in str(msg.extra)
    resp = await client.get("/stream/events", headers={"Origin": FOREIGN})
    assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
    own = f"http://127.0.0.1:{client.port}"
    async with client.ws_connect("/stream/detection", headers={"Origin": own}) as ws:
        assert (await next_json(ws))["type"] == "session"
    resp = await client.options(
        "/v1/detect", headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"}
    )
    assert resp.status == 403


async def test_listed_origin_gets_cors_and_preflight(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(server__allowed_origins=[DASHBOARD], server__token="s3cret")
    pre = await client.options(
        "/stream/events",
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    assert pre.status == 204
    assert pre.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    assert "Last-Event-ID" in pre.headers["Access-Control-Allow-Headers"]
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]
    auth = {"Origin": DASHBOARD, "Authorization": "Bearer s3cret"}
    sse = await client.get("/stream/events", headers=auth)
    assert sse.status == 200 and sse.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert sse.headers["Vary"] == "Origin"
    sse.close()
    post = await client.post(
        "/v1/detect", data=photos["coffee"], headers={**auth, "Content-Type": "image/jpeg"}
    )
    assert post.status == 200 and post.headers["Access-Control-Allow-Origin"] == DASHBOARD
    denied = await client.get("/stream/events", headers={"Origin": DASHBOARD})
    assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == DASHBOARD, (
        "the dashboard can read why"
    )
    other = await client.get("/stream/events", headers={**auth, "Origin": FOREIGN})
    assert other.status == 403


async def test_star_allows_any_origin(serve: Serve) -> None:
    client = await serve(server__allowed_origins=["*"])
    async with client.ws_connect("/stream/detection", headers={"Origin": FOREIGN}) as ws:
        assert (await next_json(ws))["type"] == "session"
    resp = await client.get("/v1/info", headers={"Origin": FOREIGN})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == FOREIGN


async def test_what_needs_the_token(serve: Serve) -> None:
    client = await serve(server__token="s3cret")
    for path in ("/livez", "/readyz", "/healthz", "/v1/info", "/metrics", "/"):
        assert (await client.get(path)).status == 200, f"{path} stays public"
    health = await (await client.get("/healthz")).text()
    assert "client_id" not in health and "session_id" not in health
    assert (await client.get("/stream/performance")).status == 401
    ok = await client.get("/stream/performance", headers={"Authorization": "Bearer s3cret"})
    assert ok.status == 200


async def test_health_requires_token_covers_info_and_performance(serve: Serve) -> None:
    client = await serve(server__token="s3cret", server__health_requires_token=True)
    for path in ("/livez", "/healthz", "/v1/info", "/stream/performance", "/metrics"):
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, params={"token": "s3cret"})).status == 200, path


async def test_metrics_token(serve: Serve) -> None:
    client = await serve(server__token="s3cret", server__metrics_token="scrape")
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer scrape"})).status == 200
    assert (await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})).status == 200
    assert (await client.get("/stream/performance", headers={"Authorization": "Bearer scrape"})).status == 401
    assert (await client.get("/healthz")).status == 200


async def test_token_file_is_the_token(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-the-file\n")
    client = await serve(server__token_file=str(path))
    async with client.ws_connect("/stream/detection") as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
    async with client.ws_connect("/stream/detection?token=from-the-file") as ws:
        assert (await next_json(ws))["type"] == "session"
    assert (await (await client.get("/v1/info")).json())["auth"] == "token"
    assert txt_record(client.app)["auth"] == "token", "mDNS tells browsers and fleet tools to send a token"


@pytest.mark.parametrize(
    ("env", "contents", "reason"),
    [
        ({"EDGE_AGENT_SERVER__TOKEN": ""}, None, "must not be empty"),
        ({"EDGE_AGENT_SERVER__TOKEN": "  "}, None, "must not be empty"),
        ({"EDGE_AGENT_SERVER__METRICS_TOKEN": ""}, None, "must not be empty"),
        ({}, "", "is empty"),
        ({}, "two words", "without spaces"),
        ({}, b"\xff\xfe", "not ASCII"),
    ],
)
def test_bad_tokens_are_config_errors(
    tmp_path: Path, env: dict[str, str], contents: str | bytes | None, reason: str
) -> None:
    if contents is not None:
        path = tmp_path / "token"
        path.write_bytes(contents.encode() if isinstance(contents, str) else contents)
        env = {"EDGE_AGENT_SERVER__TOKEN_FILE": str(path)}
    with pytest.raises(ConfigError) as err:
        load_config(None, environ=env)
    assert reason in str(err.value) and "server" in err.value.errors[0][0]


def test_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, environ={"EDGE_AGENT_SERVER__TOKEN_FILE": str(tmp_path / "nope")})


async def test_open_to_the_network_without_a_token_warns(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        client = await serve(server__host="0.0.0.0")
    warnings = [r.getMessage() for r in caplog.records if "without a token" in r.getMessage()]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0]
    doc: dict[str, Any] = await (await client.get("/healthz")).json()
    check = doc["checks"]["auth:token"][0]
    assert check["status"] == "warn" and "without a token" in check["output"]
    assert doc["status"] in ("warn", "fail")
    quiet = await serve(server__host="127.0.0.1")
    doc = await (await quiet.get("/healthz")).json()
    assert doc["checks"]["auth:token"][0]["status"] == "pass"
    tokened = await serve(server__host="0.0.0.0", server__token="s3cret")
    doc = await (await tokened.get("/healthz")).json()
    assert doc["checks"]["auth:token"][0]["status"] == "pass"


async def test_rotated_token_file_takes_effect_on_reload(
    tmp_path: Path, config: Config, ov_cache: Path
) -> None:
    """`edge-agent token rotate` then SIGHUP: the new token works, the old one no longer does."""
    token = tmp_path / "token"
    old = rotate(token)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[server]\nhost = "127.0.0.1"\ntoken_file = "{token}"\n[engine]\ndevice = "CPU"\n'
        f'cache_dir = "{ov_cache}"\n[model]\npath = "{config.model.path}"\n[mdns]\nenabled = false\n'
    )
    client = TestClient(TestServer(create_app(load_config(cfg, environ={}))))
    await client.start_server()
    try:
        perf = "/stream/performance"
        assert (await client.get(perf, headers={"Authorization": f"Bearer {old}"})).status == 200
        new = rotate(token)
        assert await reload_config(client.app)
        assert (await client.get(perf, headers={"Authorization": f"Bearer {old}"})).status == 401
        assert (await client.get(perf, headers={"Authorization": f"Bearer {new}"})).status == 200
        token.unlink()  # a broken token file is a rejected reload: the running token stays
        assert not await reload_config(client.app)
        assert (await client.get(perf, headers={"Authorization": f"Bearer {new}"})).status == 200
    finally:
        await client.close()
