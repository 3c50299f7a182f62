"""One exception base for Edge Agent, with specific subclasses (cf. zeroconf's _exceptions)."""


class EdgeAgentError(Exception):
    """Base class of every error Edge Agent raises on purpose."""

    code = "internal"


class ConfigError(EdgeAgentError):
    """The configuration is invalid; ``errors`` lists (key path, reason) pairs."""

    code = "config"

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {r}" for k, r in errors))


class ModelError(EdgeAgentError):
    """A model file is missing, unreadable or has inputs/outputs we cannot serve."""

    code = "model"


class DeviceError(EdgeAgentError):
    """No usable inference device could be compiled for."""

    code = "device"


class EngineNotRunning(EdgeAgentError):
    """The engine was used before start() or after stop()."""

    code = "engine_stopped"


class InferenceError(EdgeAgentError):
    """OpenVINO failed while running an inference request."""

    code = "inference_failed"


class FrameError(EdgeAgentError):
    """Base class for a frame the engine refuses; nothing else is affected."""

    code = "bad_frame"


class EmptyFrame(FrameError):
    """The frame has no bytes."""

    code = "empty_frame"


class NotJpeg(FrameError):
    """The bytes are not a JPEG image."""

    code = "not_jpeg"


class TruncatedJpeg(FrameError):
    """The JPEG ends early or is corrupt."""

    code = "corrupt_jpeg"


class FrameTooLarge(FrameError):
    """The frame is larger than the configured byte limit."""

    code = "frame_too_large"


class DimensionsTooLarge(FrameError):
    """The JPEG header declares dimensions above the configured limit."""

    code = "dimensions_too_large"


class InferenceTimeout(EdgeAgentError):
    """No result within the time an inference may take (systemd.max_inference_age): the engine looks stalled."""

    code = "inference_timeout"


class ListenError(EdgeAgentError):
    """The HTTP port cannot be bound (busy, or an address this host does not have)."""

    code = "listen"
