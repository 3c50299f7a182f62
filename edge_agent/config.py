"""Configuration: one TOML file modelled with pydantic, plus environment overrides."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .camera_config import Cameras
from .config_events import EventsConfig, MqttConfig
from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")
DEVICE_PATTERN = re.compile(r"((AUTO|MULTI|HETERO|BATCH):)?(CPU|GPU|NPU)(\.\d+)?(,(CPU|GPU|NPU)(\.\d+)?)*")


# A deeper per-session queue only adds latency: the latest frame wins, older waiting frames are dropped.
MAX_QUEUE_SIZE = 8


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerConfig(_Section):
    host: str = Field("0.0.0.0", description="Address the HTTP/WebSocket server listens on.")
    port: int = Field(
        8080, ge=0, le=65535, description="TCP port of the HTTP/WebSocket server (0 = any free)."
    )
    token: str | None = Field(
        None,
        description="Bearer token required by WS, SSE, /v1/detect and /stream/performance (None = no token).",
    )
    token_file: str | None = Field(
        None,
        description="File holding the bearer token, read at start and reload (the .deb's unit sets /etc/edge-agent/token); `token` wins.",
    )
    health_requires_token: bool = Field(
        False, description="Also require the token for /livez, /readyz, /healthz, /metrics and /v1/info."
    )
    metrics_token: str | None = Field(
        None, description="A separate bearer token that may read /metrics (for a scraper)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser Origins besides the agent's own allowed on the API (CORS); ['*'] = any origin.",
    )
    max_sessions_per_peer: int = Field(
        4, ge=1, le=1024, description="Most WebSocket sessions one peer address may hold."
    )
    max_connections_per_peer: int = Field(
        64, ge=1, le=65536, description="Most open HTTP connections (any kind) one peer address may hold."
    )
    first_frame_timeout: float = Field(
        10.0, gt=0, le=3600, description="Seconds a new WebSocket session may take to send its first frame."
    )
    body_timeout: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a client may take to send a request body (or request headers).",
    )
    shutdown_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds to drain sessions and in-flight inference on SIGTERM."
    )
    _file_token: str | None = PrivateAttr(None)

    @field_validator("token", "metrics_token")
    @classmethod
    def _not_empty(cls, value: str | None) -> str | None:
        # An empty token used to mean "auth off" while clients sending one got 401.
        if value is not None and (not value.strip() or value != value.strip()):
            raise ValueError("must not be empty or padded with spaces (leave it unset for no token)")
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> ServerConfig:
        self._file_token = None
        if self.token_file is None or self.token is not None:  # an explicit token wins
            return self
        self._file_token = read_token_file(Path(self.token_file))
        return self

    @property
    def auth_token(self) -> str | None:
        """The bearer token in force: `token`, or the contents of `token_file`."""
        return self.token if self.token is not None else self._file_token


def read_token_file(path: Path) -> str:
    """The token in a token file (surrounding whitespace ignored), or ValueError with the reason."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"token_file {path} does not exist") from None
    except PermissionError:
        raise ValueError(f"token_file {path}: permission denied") from None
    except IsADirectoryError:
        raise ValueError(f"token_file {path} is a directory") from None
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError(f"token_file {path} is not ASCII text") from None
    if not token:
        raise ValueError(f"token_file {path} is empty")
    if any(c.isspace() for c in token):
        raise ValueError(f"token_file {path} must hold one token without spaces")
    return token


class ModelConfig(_Section):
    path: str = Field(
        "default",
        description="OpenVINO IR (.xml), ONNX or TF model; 'default' is the built-in YOLOv3-tiny COCO IR.",
    )
    family: Literal["auto", "darknet", "ultralytics", "yolov5", "end2end", "ssd"] = Field(
        "auto", description="Output decoder; 'auto' reads the model's metadata and output shapes."
    )
    labels: list[str] | None = Field(None, description="Class labels overriding those found with the model.")
    name: str | None = Field(None, description="Display name; defaults to the model file's stem.")
    input_size: tuple[Annotated[int, Field(ge=32, le=4096)], Annotated[int, Field(ge=32, le=4096)]] | None = (
        Field(
            None,
            description="[width, height] for a model with a dynamic input that does not declare its size (imgsz).",
        )
    )
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="'auto': the gated INT8 model <stem>-int8.xml beside the model when there is one, else FP32.",
    )


class EngineConfig(_Section):
    device: str = Field(
        "auto",
        description="'auto' (Intel GPU, then NPU, else CPU) or an OpenVINO device string (CPU, GPU.1, AUTO:GPU,CPU).",
    )

    @field_validator("device")
    @classmethod
    def _device_syntax(cls, value: str) -> str:
        value = value.strip().upper()  # device names are case-insensitive (OPENVINO_DEVICE=gpu)
        if value == "AUTO":  # as the seed's OPENVINO_DEVICE=AUTO: our selection, with its reason
            return "auto"
        if value != "auto" and not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(
                "expected 'auto' or an OpenVINO device such as CPU, GPU, GPU.1, NPU, AUTO:GPU,CPU"
            )
        return value

    performance_hint: Literal["auto", "LATENCY", "THROUGHPUT"] = Field(
        "auto", description="OpenVINO performance hint; 'auto' picks LATENCY up to 4 cores, THROUGHPUT above."
    )

    @field_validator("performance_hint", mode="before")
    @classmethod
    def _hint_case(cls, value: object) -> object:
        if isinstance(value, str):
            return "auto" if value.strip().lower() == "auto" else value.strip().upper()
        return value

    async_inference: bool = Field(
        True, description="Use several infer requests in flight (False = exactly one)."
    )
    num_requests: int = Field(
        0,
        ge=0,
        le=64,
        description="Infer requests; 0 = the device's OPTIMAL_NUMBER_OF_INFER_REQUESTS + 1 (decode overlaps inference).",
    )
    cpu_threads: int = Field(
        0, ge=0, le=1024, description="INFERENCE_NUM_THREADS for the CPU plugin; 0 = plugin default."
    )
    cpu_pinning: bool | Literal["NUMA", "HYBRID_AWARE"] | None = Field(
        None,
        description="ENABLE_CPU_PINNING for the CPU plugin; None, NUMA or HYBRID_AWARE = the plugin's own "
        "NUMA- and core-type-aware placement (OpenVINO's CPU_BIND_THREAD values).",
    )

    @field_validator("cpu_pinning", mode="before")
    @classmethod
    def _pinning_words(cls, value: object) -> object:
        if isinstance(value, str):  # CPU_BIND_THREAD=YES|NO|NUMA|HYBRID_AWARE (the seed guide's values)
            word = value.strip().upper()
            return {"YES": True, "NO": False}.get(word, word)
        return value

    cache_enabled: bool = Field(
        True, description="Cache compiled models in cache_dir so warm starts are fast."
    )
    cache_dir: str = Field("/var/cache/edge-agent", description="OpenVINO model cache directory (CACHE_DIR).")
    compile_timeout: float = Field(
        300.0,
        gt=0,
        description="Seconds a candidate device may take to compile and warm up before it is skipped.",
    )
    max_frame_bytes: int = Field(1 << 20, ge=1024, description="Largest accepted JPEG frame in bytes.")
    max_frame_pixels: int = Field(
        4096 * 4096,
        ge=64 * 64,
        description="Largest accepted frame area (width x height) from the JPEG header.",
    )


class DetectionConfig(_Section):
    confidence: float = Field(0.35, ge=0.0, le=1.0, description="Default minimum confidence of a detection.")
    iou: float = Field(0.45, ge=0.0, le=1.0, description="Default IoU threshold of class-aware NMS.")
    max_detections: int = Field(100, ge=1, le=1000, description="Most detections returned per frame.")


class StreamingConfig(_Section):
    max_fps: float = Field(30.0, gt=0, le=240, description="Highest per-session frame rate.")
    default_fps: float = Field(15.0, gt=0, le=240, description="Frame rate a new session starts with.")
    min_fps: float = Field(5.0, gt=0, le=240, description="Lowest frame rate adaptive control will go to.")
    adaptive_fps: bool = Field(
        True, description="Tell each session its fair share of the measured capacity (fps messages)."
    )
    queue_size: int = Field(
        1,
        ge=1,
        le=MAX_QUEUE_SIZE,
        description="Frames a session may have waiting; newer frames replace older (larger values are clamped).",
    )
    session_timeout: float = Field(
        60.0, gt=0, description="Seconds without a message before a session is closed."
    )
    max_sessions: int = Field(16, ge=1, le=1024, description="Most concurrent WebSocket sessions.")
    target_latency_ms: float = Field(
        100.0, gt=0, description="p95 processing latency above which /healthz warns."
    )
    max_text_bytes: int = Field(
        2 << 20, ge=1024, description="Largest text message (base64 frames are ~4/3 of the JPEG size)."
    )
    event_buffer: int = Field(
        256, ge=1, le=100000, description="SSE events kept per client for Last-Event-ID resume."
    )
    subscriber_queue: int = Field(
        64, ge=1, le=10000, description="SSE events queued per slow subscriber before dropping."
    )
    keepalive_interval: float = Field(15.0, gt=0, description="Seconds between SSE keep-alive comments.")

    @model_validator(mode="after")
    def _fps_order(self) -> StreamingConfig:
        if not self.min_fps <= self.default_fps <= self.max_fps:
            raise ValueError("need min_fps <= default_fps <= max_fps")
        return self


class HazardRule(_Section):
    name: str = Field(..., min_length=1, description="Rule name reported in replies and events.")
    classes: list[str] = Field(..., min_length=1, description="Labels that trigger the rule.")
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Minimum detection confidence.")
    zone: list[tuple[float, float]] | None = Field(
        None,
        description="Optional polygon of normalised (x, y) points; the box's bottom centre must be inside.",
    )
    min_frames: int = Field(2, ge=1, description="Consecutive triggering frames before the hazard starts.")
    clear_frames: int = Field(5, ge=1, description="Consecutive clear frames before the hazard ends.")

    @model_validator(mode="after")
    def _zone_points(self) -> HazardRule:
        if self.zone is not None:
            if len(self.zone) < 3:
                raise ValueError("zone needs at least 3 points")
            if any(not (0.0 <= c <= 1.0) for p in self.zone for c in p):
                raise ValueError("zone points are normalised: each coordinate in [0, 1]")
        return self


class MdnsConfig(_Section):
    enabled: bool = Field(True, description="Advertise the service over mDNS (zeroconf).")
    instance_name: str | None = Field(None, description="Service instance name; default: the host name.")
    interfaces: list[str] = Field(
        default_factory=list,
        description="IPv4 addresses or interface names to advertise on; empty = all non-loopback, non-virtual.",
    )


class SystemdConfig(_Section):
    watchdog_probe_interval: float = Field(
        2.0, gt=0, description="Seconds of idleness after which the watchdog runs a small probe inference."
    )
    max_inference_age: float = Field(
        5.0,
        gt=0,
        description="Seconds without a completed inference after which the agent calls itself stalled: "
        "watchdog restart (WATCHDOG=trigger), /readyz 503, and the longest a POST /v1/detect waits.",
    )


class DebugConfig(_Section):
    fault_injection: bool = Field(
        False, description="TESTS ONLY: enable POST /debug/fault/stall, which hangs every inference."
    )


class CalibrationConfig(_Section):
    keep_frames: int = Field(
        0,
        ge=0,
        le=10000,
        description="Keep a reservoir sample of this many real frames for `model quantize --from-frames` (0: off).",
    )
    dir: str = Field(
        "/var/lib/edge-agent/calibration",
        description="Where kept frames are written (files 0600; local only, never sent anywhere).",
    )
    min_interval: float = Field(
        1.0,
        ge=0,
        description="Seconds between frames considered for the sample, so it spans hours, not bursts.",
    )


class Config(_Section):
    server: ServerConfig = Field(default_factory=ServerConfig, description="HTTP server.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Detector model.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="OpenVINO engine.")
    detection: DetectionConfig = Field(default_factory=DetectionConfig, description="Detection defaults.")
    streaming: StreamingConfig = Field(default_factory=StreamingConfig, description="Streaming sessions.")
    hazards: list[HazardRule] = Field(
        default_factory=lambda: [HazardRule(name="person", classes=["person"], min_confidence=0.5)],
        description="Hazard rules evaluated on every frame.",
    )
    mdns: MdnsConfig = Field(default_factory=MdnsConfig, description="mDNS advertisement.")
    cameras: Cameras = Field(default_factory=list, description="Cameras the box pulls frames from itself.")
    systemd: SystemdConfig = Field(default_factory=SystemdConfig, description="systemd integration.")
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="On-site INT8 calibration frames."
    )
    events: EventsConfig = Field(default_factory=EventsConfig, description="Hazard history and snapshots.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker and Home Assistant.")
    debug: DebugConfig = Field(default_factory=DebugConfig, description="Test-only switches.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


# The seed guide's variables keep their meaning; everything else is EDGE_AGENT_SECTION__KEY.
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
