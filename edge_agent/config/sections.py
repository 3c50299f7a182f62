"""The config sections of the engine, streaming, hazards, mDNS, systemd and calibration, and `Config`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .base import Section as _Section
from .cameras import Cameras
from .events import EventsConfig, MqttConfig
from .server import ServerConfig

DEFAULT_CONFIG_PATH = Path("/etc/edge-agent/config.toml")
DEVICE_PATTERN = re.compile(r"((AUTO|MULTI|HETERO|BATCH):)?(CPU|GPU|NPU)(\.\d+)?(,(CPU|GPU|NPU)(\.\d+)?)*")


# A deeper per-session queue only adds latency: the latest frame wins, older waiting frames are dropped.
MAX_QUEUE_SIZE = 8


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

    inference_precision: Literal["auto", "f32", "bf16", "f16"] = Field(
        "auto",
        description="INFERENCE_PRECISION_HINT on CPU and GPU; 'auto' = the device's own choice (bf16 on CPUs "
        "with AMX, f32 on other CPUs, f16 on GPUs). 'f32' trades speed for the model's exact arithmetic.",
    )

    @field_validator("inference_precision", mode="before")
    @classmethod
    def _precision_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
