"""The engine on the real shipped model and real photographs: objects, box positions, geometry, load."""

from __future__ import annotations

import asyncio
import tracemalloc

import numpy as np
import simplejpeg

from edge_agent.inference.contract import Detection, DetectParams
from edge_agent.inference.engine import Engine
from tests.conftest import encode

# Hand-annotated boxes (x1, y1, x2, y2) of people in the ultralytics sample photos.
BUS_COAT_MAN = (50, 400, 245, 905)
BUS_SUNGLASSES_MAN = (220, 405, 345, 860)
BUS_RIGHT_EDGE = (665, 360, 810, 875)
ZIDANE_RIGHT_MAN = (745, 40, 1140, 720)
# ... and in Debian's darknet sample photo person.jpg (640x424).
FIELD_PERSON = (190, 98, 275, 375)
FIELD_DOG = (62, 262, 200, 345)
FIELD_HORSE = (405, 138, 602, 348)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two x1y1x2y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def people(dets: list[Detection]) -> list[Detection]:
    return [d for d in dets if d.label == "person"]


async def test_person_with_dog_and_horse(engine: Engine, photos: dict[str, bytes]) -> None:
    result = await engine.detect(photos["person_dog"])
    assert result.image_size == (640, 424)
    for label, truth in (("person", FIELD_PERSON), ("dog", FIELD_DOG), ("horse", FIELD_HORSE)):
        best = max((d for d in result.detections if d.label == label), key=lambda d: iou(d.box, truth))
        assert iou(best.box, truth) > 0.7, (label, best)
        assert best.confidence > 0.8


async def test_bus_people_boxes_in_place(engine: Engine, photos: dict[str, bytes]) -> None:
    result = await engine.detect(photos["bus"])
    assert result.image_size == (810, 1080)
    found = people(result.detections)
    assert len(found) >= 2
    assert iou(found[0].box, BUS_COAT_MAN) > 0.6, found[0]
    truth = (BUS_COAT_MAN, BUS_SUNGLASSES_MAN, BUS_RIGHT_EDGE)
    for det in found:
        cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
        assert any(t[0] <= cx <= t[2] and t[1] <= cy <= t[3] for t in truth), f"person box off target: {det}"


async def test_zidane_person_and_tie(engine: Engine, photos: dict[str, bytes]) -> None:
    result = await engine.detect(
        photos["zidane"], DetectParams(confidence=0.2)
    )  # ties score 0.2-0.35 on tiny
    right = max(people(result.detections), key=lambda d: iou(d.box, ZIDANE_RIGHT_MAN))
    assert iou(right.box, ZIDANE_RIGHT_MAN) > 0.6
    ties = [d for d in result.detections if d.label == "tie"]
    assert ties, "both men wear a visible tie"
    for tie in ties:  # a tie is worn: it lies inside some person's box
        cx, cy = (tie.box[0] + tie.box[2]) / 2, (tie.box[1] + tie.box[3]) / 2
        assert any(
            p.box[0] <= cx <= p.box[2] and p.box[1] <= cy <= p.box[3] for p in people(result.detections)
        )


async def test_cup_in_coffee_photo(engine: Engine, photos: dict[str, bytes]) -> None:
    result = await engine.detect(photos["coffee"])
    cups = [d for d in result.detections if d.label == "cup"]
    assert cups
    cx, cy = (cups[0].box[0] + cups[0].box[2]) / 2, (cups[0].box[1] + cups[0].box[3]) / 2
    assert 150 < cx < 450 and 50 < cy < 350  # the cup sits in the middle of the 600x400 photo


async def test_boxes_scale_with_the_frame(engine: Engine, photos: dict[str, bytes]) -> None:
    full = await engine.detect(photos["zidane"])
    image = simplejpeg.decode_jpeg(photos["zidane"])
    half = await engine.detect(encode(np.ascontiguousarray(image[::2, ::2])))
    assert half.image_size == (640, 360)
    a = max(people(full.detections), key=lambda d: iou(d.box, ZIDANE_RIGHT_MAN))
    b = max(people(half.detections), key=lambda d: iou(d.box, tuple(v / 2 for v in ZIDANE_RIGHT_MAN)))
    assert np.allclose(np.array(a.box) / 2, b.box, atol=640 * 0.04)


async def test_letterbox_offset_is_undone(engine: Engine, photos: dict[str, bytes]) -> None:
    image = simplejpeg.decode_jpeg(photos["bus"])
    canvas = np.full((1080, 1620, 3), 114, np.uint8)
    canvas[:, 405 : 405 + 810] = image
    shifted = await engine.detect(encode(canvas))
    coat = max(people(shifted.detections), key=lambda d: iou(d.box, (455, 400, 650, 905)))
    assert iou(coat.box, (455, 400, 650, 905)) > 0.5, coat


async def test_thresholds_and_class_filter(engine: Engine, photos: dict[str, bytes]) -> None:
    loose = await engine.detect(photos["zidane"], DetectParams(confidence=0.2))
    strict = await engine.detect(photos["zidane"], DetectParams(confidence=0.8))
    assert len(strict.detections) < len(loose.detections)
    assert all(d.confidence >= 0.8 for d in strict.detections)
    only_ties = await engine.detect(photos["zidane"], DetectParams(confidence=0.2, classes=frozenset({27})))
    assert only_ties.detections and {d.label for d in only_ties.detections} == {"tie"}
    no_nms = await engine.detect(photos["bus"], DetectParams(confidence=0.1, iou=1.0))
    nms = await engine.detect(photos["bus"], DetectParams(confidence=0.1, iou=0.3))
    assert len(nms.detections) < len(no_nms.detections)


async def test_timings_cover_every_stage(engine: Engine, photos: dict[str, bytes]) -> None:
    t = (await engine.detect(photos["bus"])).timings
    assert t.decode > 0 and t.preprocess > 0 and t.inference > 0 and t.postprocess > 0
    assert t.total >= t.decode + t.preprocess + t.inference
    assert engine.last_success is not None
    # Built once, queue included: the parts add up to no more than the total.
    assert t.queue >= 0 and t.total >= t.queue + t.decode + t.preprocess + t.inference + t.postprocess - 1e-6


async def test_parallel_frames_share_requests(engine: Engine, photos: dict[str, bytes]) -> None:
    frames = [photos["bus"], photos["zidane"], photos["coffee"]] * 4
    results = await asyncio.gather(*(engine.detect(f) for f in frames))
    assert [r.image_size for r in results] == [(810, 1080), (1280, 720), (600, 400)] * 4
    solo = await engine.detect(photos["bus"])
    assert [d.label for d in results[0].detections] == [d.label for d in solo.detections]
    assert engine.in_flight == 0


async def test_steady_state_allocates_no_frame_sized_arrays(engine: Engine, photos: dict[str, bytes]) -> None:
    image = simplejpeg.decode_jpeg(photos["zidane"])
    frame = encode(np.ascontiguousarray(image[:480, :640]))
    for _ in range(10):  # warm up: plan caches, buffers, thread pool
        await engine.detect(frame)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(150):
            await engine.detect(frame)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    frame_bytes = 640 * 480 * 3
    assert peak - base < frame_bytes / 2, f"peak grew by {peak - base} bytes during 150 frames"
    assert current - base < 64 * 1024


async def test_callers_are_served_first_come_first_served(engine: Engine, photos: dict[str, bytes]) -> None:
    frame = photos["coffee"]
    counts = [0] * (2 * engine.num_requests + 1)
    done = 0

    async def caller(i: int) -> None:
        nonlocal done
        while done < 8 * len(counts):
            await engine.detect(frame)  # goes straight back in line, like a closed-loop client
            counts[i] += 1
            done += 1

    await asyncio.gather(*(caller(i) for i in range(len(counts))))
    assert max(counts) - min(counts) <= 2, counts


async def test_cancelled_caller_does_not_lose_or_corrupt_a_request(
    engine: Engine, photos: dict[str, bytes]
) -> None:
    for delay in (0.0, 0.001, 0.01):
        tasks = [asyncio.create_task(engine.detect(photos["bus"])) for _ in range(engine.num_requests + 1)]
        await asyncio.sleep(delay)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    results = await asyncio.gather(*(engine.detect(photos["zidane"]) for _ in range(engine.num_requests * 2)))
    assert all(r.image_size == (1280, 720) and r.detections for r in results)
    for _ in range(100):  # cancelled requests finish on their own and give their slot back
        if engine.in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert engine.in_flight == 0
