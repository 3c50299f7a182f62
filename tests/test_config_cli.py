"""Configuration file, environment overrides, clear errors, and the CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import effective_values, load_config
from edge_agent.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "edge_agent.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )


def test_documented_default_config_file_is_valid_and_equals_builtin_defaults() -> None:
    shipped = load_config(REPO / "configs" / "config.toml", environ={})
    builtin = load_config(None, environ={})
    assert shipped.config == builtin.config


def test_env_overrides_keep_seed_meanings_and_sources(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[engine]\ndevice = "CPU"\n[streaming]\nmax_fps = 20\n')
    env = {
        "STREAMING_MAX_FPS": "25",
        "CONFIDENCE_THRESHOLD": "0.6",
        "OPENVINO_PERFORMANCE_MODE": "latency",
        "CPU_BIND_THREAD": "false",
        "EDGE_AGENT_SERVER__PORT": "9000",
        "EDGE_AGENT_MDNS__INTERFACES": '["eth0"]',
    }
    loaded = load_config(path, environ=env)
    cfg = loaded.config
    assert cfg.streaming.max_fps == 25 and cfg.detection.confidence == 0.6
    assert cfg.engine.performance_hint == "LATENCY" and cfg.engine.cpu_pinning is False
    assert cfg.server.port == 9000 and cfg.mdns.interfaces == ["eth0"] and cfg.engine.device == "CPU"
    sources = {k: s for k, _, s in effective_values(loaded)}
    assert sources["streaming.max_fps"] == "env STREAMING_MAX_FPS"
    assert sources["engine.device"] == f"file {path}"
    assert sources["server.port"] == "env EDGE_AGENT_SERVER__PORT"
    assert sources["server.host"] == "default"


@pytest.mark.parametrize(
    ("toml", "env", "key", "reason"),
    [
        ("[engine]\nfoo = 1\n", {}, "engine.foo", "unknown key"),
        ("[server]\nport = 70000\n", {}, "server.port", "less than or equal to 65535"),
        ("", {"IOU_THRESHOLD": "high"}, "detection.iou", "valid number"),
        ("[streaming]\nmin_fps = 20\ndefault_fps = 10\n", {}, "streaming", "min_fps <= default_fps"),
        (
            '[[hazards]]\nname = "x"\nclasses = ["person"]\nzone = [[0, 0], [2, 0], [0, 1]]\n',
            {},
            "hazards.0",
            "normalised",
        ),
        ('[engine]\ndevice = "TPU"\n', {}, "engine.device", "OpenVINO device"),
        ("[server\n", {}, "c.toml", "invalid TOML"),
    ],
)
def test_config_errors_name_key_and_reason(
    tmp_path: Path, toml: str, env: dict[str, str], key: str, reason: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=env)
    assert any(key in k and reason in r for k, r in info.value.errors), info.value.errors


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"OPENVINO_DEVICE": "AUTO"}, "device", "auto"),
        ({"EDGE_AGENT_ENGINE__DEVICE": "Auto"}, "device", "auto"),
        ({"OPENVINO_DEVICE": "AUTO:GPU,CPU"}, "device", "AUTO:GPU,CPU"),
        ({"EDGE_AGENT_LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
    ],
)
def test_usual_spellings_are_accepted(env: dict[str, str], key: str, value: str) -> None:
    cfg = load_config(None, environ=env).config
    assert (cfg.engine.device if key == "device" else cfg.log_level) == value


def test_auto_device_in_the_file_means_our_selection(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('log_level = "warning"\n[engine]\ndevice = "AUTO"\n')
    cfg = load_config(path, environ={}).config
    assert (cfg.engine.device, cfg.log_level) == ("auto", "WARNING")


def test_cli_config_error_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nport = "eighty"\n[engine]\nthreads = 2\n')
    proc = run_cli("config", "check", "--config", str(path))
    assert proc.returncode == 2
    assert (
        "config error: server.port:" in proc.stderr
        and "config error: engine.threads: unknown key" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    missing = run_cli("serve", "--config", str(tmp_path / "absent.toml"))
    assert (
        missing.returncode == 2 and "file not found" in missing.stderr and "Traceback" not in missing.stderr
    )


def test_cli_config_show_lists_sources(tmp_path: Path) -> None:
    proc = run_cli("config", "show", env={"PATH": "/usr/bin:/bin", "STREAMING_QUEUE_SIZE": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "streaming.queue_size = 2    # env STREAMING_QUEUE_SIZE" in proc.stdout
    assert 'engine.device = "auto"    # default' in proc.stdout


def test_cli_detect_person_with_dog(default_model: Path, photos: dict[str, bytes], tmp_path: Path) -> None:
    from tests.inference.test_engine import FIELD_DOG, FIELD_PERSON, iou

    image = tmp_path / "person.jpg"
    image.write_bytes(photos["person_dog"])
    env = {"PATH": "/usr/bin:/bin", "EDGE_AGENT_ENGINE__CACHE_DIR": str(tmp_path / "c")}
    proc = run_cli("detect", "--json", str(image), env=env)
    assert proc.returncode == 0, proc.stderr
    detections = json.loads(proc.stdout)
    assert all(set(d) == {"label", "class_id", "confidence", "box"} for d in detections)
    for label, class_id, truth in (("person", 0, FIELD_PERSON), ("dog", 16, FIELD_DOG)):
        found = [d for d in detections if d["label"] == label]
        assert found and found[0]["class_id"] == class_id
        assert max(iou(tuple(d["box"]), truth) for d in found) > 0.7
    text = run_cli("detect", str(image), env=env)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert any(ln.startswith("person") and "box=[" in ln for ln in lines)
    assert any(ln.startswith("dog") and "box=[" in ln for ln in lines)


def test_cli_detect_bad_file_is_a_clear_error(default_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    proc = run_cli(
        "detect", str(bad), env={"PATH": "/usr/bin:/bin", "EDGE_AGENT_ENGINE__CACHE_DIR": str(tmp_path)}
    )
    assert proc.returncode == 1 and "not a JPEG" in proc.stderr and "Traceback" not in proc.stderr
    gone = run_cli("detect", str(tmp_path / "missing.jpg"), env={"PATH": "/usr/bin:/bin"})
    assert gone.returncode == 1 and "No such file" in gone.stderr


def test_cli_devices_reports_choice_and_reason(default_model: Path, tmp_path: Path) -> None:
    proc = run_cli("devices", env={"PATH": "/usr/bin:/bin", "EDGE_AGENT_ENGINE__CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("CPU")
    assert "auto picks: CPU (executing on CPU): no Intel GPU or NPU found" in proc.stdout


def test_shipped_config_file_is_the_rendered_documentation() -> None:
    from edge_agent.config.doc import render_default_toml

    assert (REPO / "configs" / "config.toml").read_text() == render_default_toml(), (
        "regenerate with: edge-agent config default > configs/config.toml"
    )
