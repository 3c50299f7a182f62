"""Render the documented default config file (configs/config.toml) from the pydantic model itself."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from .cameras import CAMERAS_EXAMPLE
from .sections import Config

HEADER = """\
# Edge Agent configuration (/etc/edge-agent/config.toml).
# Every key is optional; the values below are the built-in defaults.
# Environment variables override this file: the seed guide's names (OPENVINO_DEVICE, MODEL_PATH,
# STREAMING_MAX_FPS, CONFIDENCE_THRESHOLD, ...) or EDGE_AGENT_<SECTION>__<KEY>, e.g. EDGE_AGENT_SERVER__PORT=9000.
# Check a file with `edge-agent config check --config FILE`; see where each value came from with `config show`.
"""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def _fields(model: BaseModel, lines: list[str]) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        lines.append(f"# {field.description}")
        lines.append(f"# {name} =" if value is None else f"{name} = {_toml_value(value)}")


def render_default_toml() -> str:
    """The default configuration as commented TOML."""
    config = Config()
    lines = [HEADER]
    for name, field in Config.model_fields.items():
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines += [f"[{name}]  # {field.description}"]
            _fields(value, lines)
            lines.append("")
        elif isinstance(value, list):
            if name == "cameras" and not value:
                lines.append(CAMERAS_EXAMPLE)
            for item in value:
                lines += [f"[[{name}]]  # {field.description}"]
                _fields(item, lines)
                lines.append("")
        else:
            lines = [*lines[:1], f"# {field.description}", f"{name} = {_toml_value(value)}", "", *lines[1:]]
    return "\n".join(lines).rstrip() + "\n"
