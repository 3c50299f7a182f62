"""`edge-agent token show|rotate` as a user runs it, against a real token file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from edge_agent.config import load_config

CLI = [sys.executable, "-m", "edge_agent.cli"]


def token_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    full.update(env or {})
    return subprocess.run(
        [*CLI, "token", *args], check=False, capture_output=True, text=True, timeout=60, env=full
    )


def test_rotate_then_show_and_the_config_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    done = token_cli("rotate", "--file", str(path), "--no-reload")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert len(token) == 43 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token_cli("show", "--file", str(path)).stdout.strip() == token
    again = token_cli("rotate", "--file", str(path), "--no-reload").stdout.strip()
    assert again != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary file left"
    cfg = load_config(None, environ={"EDGE_AGENT_SERVER__TOKEN_FILE": str(path)}).config
    assert cfg.server.auth_token == again
    assert again not in str(cfg.model_dump()), "the token itself is not shown by `config show`"


def test_path_comes_from_the_environment_or_config_file(tmp_path: Path) -> None:
    path = tmp_path / "from-env"
    path.write_text("env-token\n")
    assert token_cli("show", env={"EDGE_AGENT_SERVER__TOKEN_FILE": str(path)}).stdout.strip() == "env-token"
    other = tmp_path / "from-config"
    other.write_text("config-token\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[server]\ntoken_file = "{other}"\n')
    assert token_cli("show", "--config", str(config)).stdout.strip() == "config-token"


def test_show_errors_are_one_line(tmp_path: Path) -> None:
    done = token_cli("show", "--file", str(tmp_path / "missing"))
    assert done.returncode == 1 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = token_cli("rotate", "--file", str(tmp_path / "no" / "dir" / "token"), "--no-reload")
    assert done.returncode == 1 and "cannot write" in done.stderr and "Traceback" not in done.stderr
