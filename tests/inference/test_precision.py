"""engine.inference_precision: the precision OpenVINO computes in, set on the real CPU plugin and reported."""

from __future__ import annotations

import pytest

from edge_agent.config import Config, load_config
from edge_agent.errors import ConfigError
from edge_agent.inference.compile import compile_properties
from edge_agent.inference.engine import Engine


def test_precision_words_fold_case_and_map_to_the_hint() -> None:
    eng = load_config(None, environ={"EDGE_AGENT_ENGINE__INFERENCE_PRECISION": "F32"}).config.engine
    assert eng.inference_precision == "f32"
    assert compile_properties(eng, "LATENCY", "CPU")["INFERENCE_PRECISION_HINT"] == "f32"
    assert "INFERENCE_PRECISION_HINT" not in compile_properties(eng, "LATENCY", "NPU")
    auto = load_config(None, environ={}).config.engine
    assert "INFERENCE_PRECISION_HINT" not in compile_properties(auto, "LATENCY", "CPU")


def test_an_unknown_precision_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, environ={"EDGE_AGENT_ENGINE__INFERENCE_PRECISION": "fp64"})
    assert info.value.errors[0][0] == "engine.inference_precision"


async def test_f32_is_what_the_compiled_model_runs_and_the_status_says(
    config: Config, photos: dict[str, bytes]
) -> None:
    cfg = config.model_copy(
        update={"engine": config.engine.model_copy(update={"inference_precision": "f32"})}
    )
    said: list[str] = []
    engine = Engine(cfg)
    engine.on_status = said.append
    await engine.async_start()
    try:
        labels = {d.label for d in (await engine.detect(photos["person_dog"])).detections}
    finally:
        await engine.async_stop()
    assert said[-1].endswith("ready on CPU f32"), said
    assert {"person", "dog", "horse"} <= labels
