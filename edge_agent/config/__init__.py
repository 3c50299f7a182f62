"""Configuration: one TOML file modelled with pydantic, plus environment overrides.

`sections` holds the schema (`Config` and its sections), `server`, `cameras` and `events` their own sections,
`loading` reads the file and the environment into a `LoadedConfig`, `doc` renders the documented defaults.
"""

from .cameras import CameraConfig, Cameras
from .events import EventsConfig, MqttConfig
from .loading import (
    ENV_PREFIX,
    LEGACY_ENV,
    LoadedConfig,
    effective_values,
    env_overrides,
    load_config,
    read_toml,
)
from .sections import (
    DEFAULT_CONFIG_PATH,
    MAX_QUEUE_SIZE,
    CalibrationConfig,
    Config,
    DebugConfig,
    DetectionConfig,
    EngineConfig,
    HazardRule,
    MdnsConfig,
    ModelConfig,
    StreamingConfig,
    SystemdConfig,
)
from .server import ServerConfig, read_token_file

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "LEGACY_ENV",
    "MAX_QUEUE_SIZE",
    "CalibrationConfig",
    "CameraConfig",
    "Cameras",
    "Config",
    "DebugConfig",
    "DetectionConfig",
    "EngineConfig",
    "EventsConfig",
    "HazardRule",
    "LoadedConfig",
    "MdnsConfig",
    "ModelConfig",
    "MqttConfig",
    "ServerConfig",
    "StreamingConfig",
    "SystemdConfig",
    "effective_values",
    "env_overrides",
    "load_config",
    "read_token_file",
    "read_toml",
]
