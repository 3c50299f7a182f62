"""OPENVINO_DEVICE=GPU on a box whose OpenCL loader is broken: serve says why, in one line (real plugin)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.agent import edge_agent_bin, write_config

OPENCL = Path("/lib/x86_64-linux-gnu/libOpenCL.so.1")


def test_serve_on_gpu_without_opencl_names_the_library(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount namespace")
    if not OPENCL.exists():
        pytest.skip("no OpenCL loader to hide")
    config = write_config(tmp_path / "c.toml", tmp_path / "cache")
    # In a private mount namespace the loader becomes an empty file: OpenVINO's GPU plugin cannot load.
    script = f'mount --bind /dev/null {OPENCL} && exec "$0" serve --config "$1"'
    env = {**os.environ, "OPENVINO_DEVICE": "GPU"}
    env.pop("NOTIFY_SOCKET", None)
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, edge_agent_bin(), str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1, out.stderr
    assert errors == [
        "error: device GPU failed: Cannot load library libopenvino_intel_gpu_plugin.so: "
        "libOpenCL.so.1: file too short"
    ], out.stderr
    assert "Traceback" not in out.stderr
