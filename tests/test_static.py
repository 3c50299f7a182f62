"""The code base stays type-checked (mypy --strict) and lint-clean (ruff)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], check=False, capture_output=True, text=True, cwd=REPO, timeout=600
    )


def test_mypy_strict_is_clean() -> None:
    proc = _run("mypy", "edge_agent", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_is_clean() -> None:
    proc = _run("ruff", "check", "edge_agent", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_ruff_format_is_applied() -> None:
    proc = _run("ruff", "format", "--check", "edge_agent", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:]
