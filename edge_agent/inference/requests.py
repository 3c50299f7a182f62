"""One infer request with its preallocated buffers, and the frame (job) it is working on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openvino as ov

from .contract import DetectParams, Frame
from .frames import FrameBuffers

INITIAL_DECODE_PIXELS = 1280 * 720


@dataclass(slots=True)
class Job:
    """One frame (or a probe, frame=None) on its way through a request, with its stage clocks (perf_counter)."""

    future: asyncio.Future[Any]  # resolves with a Result (or an EdgeAgentError as its exception)
    frame: Frame | None
    params: DetectParams
    arrived: float = field(default_factory=time.perf_counter)
    scale: float = 1.0
    dx: int = 0
    dy: int = 0
    t_decode: float = 0.0  # decode started
    t_pre: float = 0.0  # letterbox started
    t_start: float = 0.0  # inference started
    t_done: float = 0.0  # inference finished
    t_post: float = 0.0  # post-processing finished


@dataclass(slots=True)
class Slot:
    """One infer request with its preallocated input tensor and decode buffer."""

    request: ov.InferRequest
    image: np.ndarray  # [1, H, W, 4] u8 RGBX, shared with the request's input tensor
    buffers: FrameBuffers
    job: Job | None = None

    @classmethod
    def create(cls, compiled: ov.CompiledModel) -> Slot:
        """A new request whose input tensor shares memory with a preallocated array."""
        request = compiled.create_infer_request()
        image = np.zeros(tuple(compiled.input(0).get_shape()), np.uint8)
        request.set_input_tensor(ov.Tensor(image, shared_memory=True))
        return cls(request, image, FrameBuffers(INITIAL_DECODE_PIXELS))
