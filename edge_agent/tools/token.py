"""`edge-agent token show|rotate`: the API token file the .deb creates (server.token_file)."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from ..config import read_token_file, read_toml
from ..errors import EdgeAgentError

DEFAULT_TOKEN_FILE = Path("/etc/edge-agent/token")
SERVICE_USER = "edge-agent"
UNIT = "edge-agent.service"
TOKEN_FILE_ENV = "EDGE_AGENT_SERVER__TOKEN_FILE"  # what the unit sets


class TokenError(EdgeAgentError):
    """The token file cannot be read or written."""

    code = "token"


def token_path(config_path: Path | None, environ: dict[str, str]) -> Path:
    """server.token_file from the environment or the config file (unvalidated), else the .deb's path."""
    env = environ.get(TOKEN_FILE_ENV)
    if env:
        return Path(env)
    if config_path is not None and config_path.is_file():
        server = read_toml(config_path).get("server", {})
        if isinstance(server, dict) and isinstance(server.get("token_file"), str):
            return Path(server["token_file"])
    return DEFAULT_TOKEN_FILE


def show(path: Path) -> str:
    """The token in the file."""
    try:
        return read_token_file(path)
    except ValueError as exc:
        raise TokenError(str(exc)) from None


def new_token() -> str:
    """32 random bytes, URL-safe base64 without padding (43 characters), as edge-agent-firstboot makes."""
    return secrets.token_urlsafe(32)


def _owner(path: Path) -> tuple[int, int] | None:
    """Who must own the file: its current owner, else the service user (when we are root)."""
    with contextlib.suppress(FileNotFoundError):
        st = path.stat()
        return st.st_uid, st.st_gid
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return None
    return user.pw_uid, user.pw_gid


def rotate(path: Path) -> str:
    """Write a new token atomically (mode 0600, same owner) and return it."""
    token = new_token()
    owner = _owner(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        if owner is not None:
            os.chown(tmp, *owner)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TokenError(f"cannot write {path}: {exc.strerror}") from None
    return token


def reload_service() -> bool:
    """Ask systemd to reload a running service so it reads the new token (True if asked)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or os.geteuid() != 0 or not Path("/run/systemd/system").is_dir():
        return False
    done = subprocess.run([systemctl, "try-reload-or-restart", UNIT], check=False, capture_output=True)
    return done.returncode == 0
