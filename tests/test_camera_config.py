"""[[cameras]] config: validation with key paths, masked credentials; the `edge-agent cameras` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import effective_values, load_config
from edge_agent.config.cameras import CameraConfig
from edge_agent.errors import ConfigError
from tests.support.agent import AgentProcess, edge_agent_bin, write_config
from tests.support.cameras import PEOPLE, make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    """A short H.264 clip of photographs with people."""
    return make_clip(
        tmp_path_factory.mktemp("clip") / "c.mp4", [photos[n] for n in PEOPLE], 640, 480, 10, 0.5
    )


@pytest.mark.parametrize(
    ("cameras", "key", "reason"),
    [
        ('id = "a"\nurl = "ftp://cam/x"', "cameras.0.url", "unsupported scheme 'ftp'"),
        ('id = "a"\nurl = "/no/such/clip.mp4"', "cameras.0.url", "file not found: /no/such/clip.mp4"),
        ('id = "a"\nurl = "rtsp:///path"', "cameras.0.url", "no host"),
        ('id = "a b"\nurl = "rtsp://h/x"', "cameras.0.id", "expected 1-64 of"),
        ('id = "a"\nurl = "rtsp://h/x"\nfps = 0', "cameras.0.fps", "greater than 0"),
        ('id = "a"\nurl = "rtsp://h/x"\nuser = "x"', "cameras.0.user", "unknown key"),
        (
            'id = "a"\nurl = "rtsp://h/x"\nrtsp_transport = "http"',
            "cameras.0.rtsp_transport",
            "'tcp' or 'udp'",
        ),
        ('id = "a"\nurl = "rtsp://u@h/x"\npassword_file = "/no/pw"', "cameras.0.password_file", "not found"),
        (
            'id = "a"\nurl = "rtsp://h/x"\n[[cameras]]\nid = "a"\nurl = "rtsp://h/y"',
            "cameras",
            "duplicate camera id 'a'",
        ),
    ],
)
def test_bad_camera_config_is_refused_with_the_key_path(
    tmp_path: Path, cameras: str, key: str, reason: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[[cameras]]\n{cameras}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert any(k == key and reason in r for k, r in info.value.errors), info.value.errors


def test_credentials_are_masked_everywhere_but_the_connection(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    path = tmp_path / "c.toml"
    path.write_text(
        '[[cameras]]\nid = "a"\nurl = "rtsp://admin:p%40ss@cam.local:554/s1"\n'
        f'[[cameras]]\nid = "b"\nurl = "rtsp://viewer@cam.local/s2"\npassword_file = "{secret}"\n'
    )
    loaded = load_config(path, environ={})
    a, b = loaded.config.cameras
    assert a.display_url == "rtsp://admin:***@cam.local:554/s1" and a.credentials() == ("admin", "p@ss")
    assert (
        b.credentials() == ("viewer", "from-file")
        and b.connect_url() == "rtsp://viewer:from-file@cam.local/s2"
    )
    shown = json.dumps([v for _, v, _ in effective_values(loaded)])
    assert "p%40ss" not in shown and "from-file" not in shown and "admin:***@" in shown
    env = load_config(
        None, environ={"EDGE_AGENT_CAMERAS": '[{id = "e", url = "http://cam/snap.jpg", fps = 2}]'}
    )
    assert env.config.cameras == [CameraConfig(id="e", url="http://cam/snap.jpg", fps=2)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([edge_agent_bin(), *args], capture_output=True, text=True, timeout=120, check=False)


def test_cli_lists_a_running_agents_cameras_and_probes_a_url(tmp_path: Path, clip: Path) -> None:
    probe = _cli("cameras", "probe", str(clip))
    assert probe.returncode == 0, probe.stderr
    assert "codec    h264" in probe.stdout and "size     640x480" in probe.stdout
    assert "fps      10.0" in probe.stdout and "detected " in probe.stdout and "person" in probe.stdout
    refused = _cli("cameras", "probe", "rtsp://admin:hunter2@127.0.0.1:9/cam", "--timeout", "2")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == "error: rtsp://admin:***@127.0.0.1:9/cam: connection refused"
    config = write_config(tmp_path / "c.toml", tmp_path / "cache")
    with config.open("a") as fh:
        fh.write(f'[[cameras]]\nid = "demo"\nurl = "{clip}"\n')
        fh.write('[[cameras]]\nid = "door"\nurl = "rtsp://u:hunter2@127.0.0.1:9/cam"\ntimeout = 2\n')
    agent = AgentProcess(config)
    try:
        port = agent.wait_listening()
        agent.log_contains("camera door: connection refused")
        listing = _cli("cameras", "--url", f"http://127.0.0.1:{port}")
        as_json = json.loads(_cli("cameras", "--json", "--url", f"http://127.0.0.1:{port}").stdout)
    finally:
        agent.kill()
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("demo") and "streaming" in lines[0] and "640x480" in lines[0]
    assert any(line.startswith("door") and "retrying" in line for line in lines)
    assert any("connection refused" in line for line in lines) and "hunter2" not in listing.stdout
    assert [c["id"] for c in as_json] == ["demo", "door"]
    assert "hunter2" not in "\n".join(agent.stderr_lines)


def test_cli_help_lists_the_cameras_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert "cameras" in proc.stdout
