"""Loading the config: the TOML file, environment overrides (ours and the seed guide's), key-path errors."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)

from ..errors import ConfigError
from .sections import MAX_QUEUE_SIZE, Config

LEGACY_ENV: dict[str, tuple[str, ...]] = {
    "OPENVINO_DEVICE": ("engine", "device"),
    "OPENVINO_PERFORMANCE_MODE": ("engine", "performance_hint"),
    "OPENVINO_ASYNC_INFERENCE": ("engine", "async_inference"),
    "OPENVINO_CACHE_ENABLED": ("engine", "cache_enabled"),
    "MODEL_PATH": ("model", "path"),
    "CPU_THREADS_NUM": ("engine", "cpu_threads"),
    "CPU_BIND_THREAD": ("engine", "cpu_pinning"),
    "STREAMING_MAX_FPS": ("streaming", "max_fps"),
    "STREAMING_DEFAULT_FPS": ("streaming", "default_fps"),
    "STREAMING_QUEUE_SIZE": ("streaming", "queue_size"),
    "STREAMING_SESSION_TIMEOUT": ("streaming", "session_timeout"),
    "CONFIDENCE_THRESHOLD": ("detection", "confidence"),
    "IOU_THRESHOLD": ("detection", "iou"),
}
ENV_PREFIX = "EDGE_AGENT_"
_NOT_CONFIG_ENV = {"EDGE_AGENT_CONFIG"}


def _env_value(raw: str) -> Any:
    """Environment strings go to pydantic as they are (lists in TOML syntax); only the enumerated keys'
    validators fold case, so a token or a path keeps its own."""
    text = raw.strip()
    if text.startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return raw
    return raw


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    """Map environment variables to config key paths."""
    found: dict[tuple[str, ...], Any] = {}
    for name, path in LEGACY_ENV.items():
        if name in environ:
            found[path] = _env_value(environ[name])
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX) and name not in _NOT_CONFIG_ENV:
            parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p)
            if parts:
                found[parts] = _env_value(raw)
    return found


def _set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError([(".".join(path), f"'{key}' is not a table")])
        node = child
    node[path[-1]] = value


def _leaf_paths(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            paths.extend(_leaf_paths(value, (*prefix, key)))
        else:
            paths.append((*prefix, key))
    return paths


def _format_errors(exc: ValidationError, origin: dict[str, str]) -> list[tuple[str, str]]:
    errors = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        src = origin.get(key)
        errors.append((key, f"{msg}" + (f" (from {src})" if src else "")))
    return errors


class LoadedConfig(BaseModel):
    """A validated config plus where each explicitly set value came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    config: Config
    sources: dict[str, str]
    path: Path | None
    warnings: list[str] = []


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning I/O and syntax problems into ConfigError."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([("--config", f"file not found: {path}")]) from None
    except PermissionError:
        raise ConfigError([("--config", f"permission denied: {path}")]) from None
    except IsADirectoryError:
        raise ConfigError([("--config", f"is a directory, not a file: {path}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([(str(path), f"not UTF-8 text (byte {exc.start}): {exc.reason}")]) from None
    except OSError as exc:
        raise ConfigError([("--config", f"cannot read {path}: {exc.strerror or exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"invalid TOML: {exc}")]) from None


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> LoadedConfig:
    """Load file (if any), then environment, then explicit overrides (e.g. CLI flags); validate once."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = read_toml(path) if path is not None else {}
    origin = {".".join(p): f"file {path}" for p in _leaf_paths(data)}
    for key_path, value in env_overrides(environ).items():
        _set_path(data, key_path, value)
        env_name = next((n for n, p in LEGACY_ENV.items() if p == key_path and n in environ), None)
        origin[".".join(key_path)] = f"env {env_name or ENV_PREFIX + '__'.join(key_path).upper()}"
    for key_path, value in (overrides or {}).items():
        _set_path(data, key_path, value)
        origin[".".join(key_path)] = "command line"
    warnings = _clamp_queue(data, origin)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None
    return LoadedConfig(config=config, sources=origin, path=path, warnings=warnings)


def _clamp_queue(data: dict[str, Any], origin: Mapping[str, str]) -> list[str]:
    """The seed guide recommends STREAMING_QUEUE_SIZE=25: accept it, at the depth that still means something."""
    section = data.get("streaming")
    raw = section.get("queue_size") if isinstance(section, dict) else None
    try:
        wanted = int(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
    except ValueError:
        return []  # pydantic reports it
    if wanted is None or wanted <= MAX_QUEUE_SIZE:
        return []
    assert isinstance(section, dict)
    section["queue_size"] = MAX_QUEUE_SIZE
    src = origin.get("streaming.queue_size", "config")
    return [
        f"streaming.queue_size = {wanted} ({src}) clamped to {MAX_QUEUE_SIZE}: frames are latest-wins, a "
        "newer frame replaces the oldest waiting one, so a deeper queue would only add latency"
    ]


def effective_values(loaded: LoadedConfig) -> list[tuple[str, Any, str]]:
    """Every leaf value with its source ('default', 'file …', 'env …', 'command line')."""
    dumped = loaded.config.model_dump(mode="json")
    rows: list[tuple[str, Any, str]] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else k)
            return
        source = loaded.sources.get(prefix)
        if source is None:
            source = next((s for k, s in loaded.sources.items() if prefix.startswith(k + ".")), "default")
        rows.append((prefix, node, source))

    walk(dumped, "")
    return rows
