"""Bad frames get a specific error and nothing else is affected."""

from __future__ import annotations

import asyncio

import pytest

from edge_agent.errors import (
    DimensionsTooLarge,
    EmptyFrame,
    FrameError,
    FrameTooLarge,
    NotJpeg,
    TruncatedJpeg,
)
from edge_agent.inference.engine import Engine


def absurd_dimensions(jpeg: bytes, width: int = 60000, height: int = 60000) -> bytes:
    """Patch the SOF marker of a real JPEG so its header declares width x height."""
    data = bytearray(jpeg)
    i = 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 7] = height.to_bytes(2, "big")
            data[i + 7 : i + 9] = width.to_bytes(2, "big")
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def bad_frames(good: bytes) -> dict[str, tuple[bytes, type[FrameError], str]]:
    return {
        "empty": (b"", EmptyFrame, "empty"),
        "not_jpeg": (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, NotJpeg, "not a JPEG"),
        "text": (b"hello world", NotJpeg, "not a JPEG"),
        "truncated": (good[: len(good) // 3], TruncatedJpeg, "corrupt or truncated"),
        "header_only": (good[:20], TruncatedJpeg, "unreadable"),
        "oversized": (good + b"\0" * (1 << 20), FrameTooLarge, "limit is"),
        "absurd_dimensions": (absurd_dimensions(good), DimensionsTooLarge, "60000x60000"),
    }


@pytest.mark.parametrize(
    "case", ["empty", "not_jpeg", "text", "truncated", "header_only", "oversized", "absurd_dimensions"]
)
async def test_bad_frame_gets_specific_error_then_good_frame_works(
    engine: Engine, photos: dict[str, bytes], case: str
) -> None:
    data, error, words = bad_frames(photos["bus"])[case]
    with pytest.raises(error, match=words) as info:
        await engine.detect(data)
    assert info.value.code != "bad_frame"  # each subclass has its own code for API replies
    result = await engine.detect(photos["bus"])
    assert any(d.label == "person" for d in result.detections)
    assert engine.in_flight == 0


async def test_bad_frames_do_not_disturb_concurrent_good_ones(
    engine: Engine, photos: dict[str, bytes]
) -> None:
    cases = bad_frames(photos["zidane"])
    jobs = []
    for data, _, _ in cases.values():
        jobs += [engine.detect(photos["zidane"]), engine.detect(data)]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    goods, bads = outcomes[0::2], outcomes[1::2]
    assert all(not isinstance(g, BaseException) and g.detections for g in goods)
    assert [type(b) for b in bads] == [e for _, e, _ in cases.values()]
    assert engine.in_flight == 0
