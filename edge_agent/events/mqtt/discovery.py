"""Home Assistant MQTT discovery: one device per agent; entities per source and hazard rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .topics import Topics, compact, object_id


@dataclass(frozen=True, slots=True)
class Device:
    """The agent as Home Assistant's device block."""

    agent_id: str
    name: str
    model: str
    version: str
    url: str

    def block(self) -> dict[str, Any]:
        """The `device` object every entity config carries."""
        return {
            "identifiers": [f"edge_agent_{self.agent_id}"],
            "name": self.name,
            "manufacturer": "Edge Agent",
            "model": self.model,
            "sw_version": self.version,
            "configuration_url": self.url,
        }


def _entity(device: Device, topics: Topics, uid: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"edge_agent_{device.agent_id}_{uid}",
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device.block(),
        **fields,
    }


def source_configs(
    device: Device, topics: Topics, prefix: str, source: str, rules: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config of one source's entities: hazards, fps, latency, snapshot image."""
    node = object_id("edge_agent", device.agent_id)
    src = object_id(source)
    configs: dict[str, dict[str, Any]] = {}
    for rule in rules:
        uid = object_id(source, rule, "hazard")
        configs[f"{prefix}/binary_sensor/{node}/{uid}/config"] = _entity(
            device,
            topics,
            uid,
            f"{source} {rule}",
            state_topic=topics.hazard(source, rule),
            payload_on="ON",
            payload_off="OFF",
            device_class="safety",
        )
    stats = topics.stats(source)
    for key, label, unit in (("fps", "fps", "fps"), ("latency_ms", "inference latency", "ms")):
        uid = object_id(source, key)
        configs[f"{prefix}/sensor/{node}/{uid}/config"] = _entity(
            device,
            topics,
            uid,
            f"{source} {label}",
            state_topic=stats,
            value_template=f"{{{{ value_json.{key} }}}}",
            unit_of_measurement=unit,
            state_class="measurement",
        )
    uid = f"{src}_snapshot"
    configs[f"{prefix}/image/{node}/{uid}/config"] = _entity(
        device,
        topics,
        uid,
        f"{source} hazard snapshot",
        image_topic=topics.snapshot(source),
        content_type="image/jpeg",
    )
    return configs


def agent_configs(device: Device, topics: Topics, prefix: str) -> dict[str, dict[str, Any]]:
    """The agent's own entity: its health status."""
    node = object_id("edge_agent", device.agent_id)
    return {
        f"{prefix}/sensor/{node}/health/config": _entity(
            device,
            topics,
            "health",
            "health",
            state_topic=topics.health,
            value_template="{{ value_json.status }}",
        )
    }


def encode(configs: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    """The configs as retained payloads."""
    return {topic: compact(cfg) for topic, cfg in configs.items()}
