"""Shared fixtures: the real default model, real photographs, a test config and a started engine."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from edge_agent.config import Config, load_config
from edge_agent.inference.engine import Engine
from edge_agent.inference.models.loader import default_model_path
from edge_agent.tools.model import build_default

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (test photo/model packages)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"test package {name} is missing: run provisioning/setup-dev.sh --test")
    return Path(next(iter(spec.submodule_search_locations)))


def encode(image: np.ndarray, quality: int = 90) -> bytes:
    """RGB (or grey) array to JPEG bytes."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return bytes(
        simplejpeg.encode_jpeg(np.ascontiguousarray(image[..., :3]), quality=quality, colorspace="RGB")
    )


@pytest.fixture(scope="session")
def default_model() -> Path:
    """The built-in IR; built once if setup has not done it yet."""
    path = default_model_path()
    if not path.is_file():
        build_default()
    return path


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs as JPEG bytes, from registry packages (scikit-image, ultralytics assets)."""
    from skimage import data

    shots = {name: encode(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee")}
    assets = package_dir("ultralytics") / "assets"
    shots["bus"] = (assets / "bus.jpg").read_bytes()  # 810x1080: four people and a bus
    shots["zidane"] = (assets / "zidane.jpg").read_bytes()  # 1280x720: two men
    darknet = Path(sys.prefix) / "share" / "test-photos" / "darknet"  # Debian's darknet sample data
    if not (darknet / "person.jpg").is_file():
        pytest.fail(f"{darknet} is missing: run provisioning/setup-dev.sh --test")
    shots["person_dog"] = (darknet / "person.jpg").read_bytes()  # 640x424: a person, a dog and a horse
    shots["dog"] = (darknet / "dog.jpg").read_bytes()  # 768x576: a dog, a bicycle and a truck
    return shots


@pytest.fixture
def config(tmp_path: Path, default_model: Path) -> Config:
    """A config for tests: default model on CPU, cache and state in a temp dir, mDNS off, loopback, any port."""
    return load_config(
        None,
        environ={},
        overrides={
            ("engine", "device"): "CPU",
            ("model", "precision"): "fp32",  # tests' reference boxes are the FP32 model's
            ("engine", "cache_dir"): str(tmp_path / "cache"),
            ("events", "state_dir"): str(tmp_path / "state"),
            ("mdns", "enabled"): False,
            ("server", "host"): "127.0.0.1",
            ("server", "port"): 0,
        },
    ).config


@pytest.fixture
async def engine(config: Config) -> AsyncIterator[Engine]:
    """A started engine on the default model (stopped after the test)."""
    eng = Engine(config)
    await eng.async_start()
    yield eng
    await eng.async_stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for test artifacts (screenshots), gitignored."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
