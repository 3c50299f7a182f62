"""The seed guide's environment values are accepted; only enumerated keys fold case; config read failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import MAX_QUEUE_SIZE, load_config
from edge_agent.errors import ConfigError
from edge_agent.inference.compile import compile_properties

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "value", "property_set"),
    [
        ("YES", True, True),
        ("NO", False, False),
        ("NUMA", "NUMA", None),
        ("HYBRID_AWARE", "HYBRID_AWARE", None),
        ("numa", "NUMA", None),
        ("true", True, True),
    ],
)
def test_cpu_bind_thread_takes_openvinos_values(raw: str, value: object, property_set: bool | None) -> None:
    eng = load_config(None, environ={"CPU_BIND_THREAD": raw}).config.engine
    assert eng.cpu_pinning == value
    # NUMA and HYBRID_AWARE: the CPU plugin's own NUMA- and core-type-aware placement (its default).
    assert compile_properties(eng, "LATENCY", "CPU").get("ENABLE_CPU_PINNING") == property_set


def test_cpu_bind_thread_rejects_other_words() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"CPU_BIND_THREAD": "SOMETIMES"})
    assert info.value.errors[0][0].startswith("engine.cpu_pinning")


def test_seed_queue_size_is_clamped_with_one_warning_that_explains_latest_wins() -> None:
    loaded = load_config(None, environ={"STREAMING_QUEUE_SIZE": "25"})
    assert loaded.config.streaming.queue_size == MAX_QUEUE_SIZE
    assert len(loaded.warnings) == 1
    assert "STREAMING_QUEUE_SIZE" in loaded.warnings[0] and "latest-wins" in loaded.warnings[0]
    assert load_config(None, environ={"STREAMING_QUEUE_SIZE": "3"}).warnings == []
    with pytest.raises(ConfigError):
        load_config(None, environ={"STREAMING_QUEUE_SIZE": "0"})


def test_config_check_prints_the_clamp_warning() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "config", "check"],
        env={"PATH": "/usr/bin:/bin", "STREAMING_QUEUE_SIZE": "25"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0 and out.stderr.count("config warning: streaming.queue_size = 25") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"EDGE_AGENT_SERVER__TOKEN": "Cpu"}, ("server", "token", "Cpu")),
        ({"EDGE_AGENT_SERVER__TOKEN": "latency"}, ("server", "token", "latency")),
        ({"EDGE_AGENT_MDNS__INSTANCE_NAME": "Gpu"}, ("mdns", "instance_name", "Gpu")),
        ({"MODEL_PATH": "/models/Auto.xml"}, ("model", "path", "/models/Auto.xml")),
        ({"OPENVINO_DEVICE": "gpu.1"}, ("engine", "device", "GPU.1")),
        ({"OPENVINO_DEVICE": "cpu"}, ("engine", "device", "CPU")),
        ({"OPENVINO_PERFORMANCE_MODE": "throughput"}, ("engine", "performance_hint", "THROUGHPUT")),
        ({"EDGE_AGENT_ENGINE__PERFORMANCE_HINT": "AUTO"}, ("engine", "performance_hint", "auto")),
    ],
)
def test_only_enumerated_keys_fold_case(env: dict[str, str], expected: tuple[str, str, str]) -> None:
    section, key, value = expected
    assert getattr(getattr(load_config(None, environ=env).config, section), key) == value


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b'[model]\nname = "\xff"\n'), "not UTF-8"),
    ],
)
def test_unreadable_config_is_a_config_error(tmp_path: Path, make: object, reason: str) -> None:
    path = tmp_path / "c.toml"
    make(path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert reason in str(info.value)
