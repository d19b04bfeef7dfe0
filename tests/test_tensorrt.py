"""TensorRT options and prebuilt engines, as far as a CPU machine can check them (the GPU run is tests/test_gpu.py)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from edgegen import EdgegenError, load
from edgegen.runtime.manifest import Manifest
from edgegen.runtime.tensorrt import (
    ENGINE_FILE,
    ENGINE_INFO,
    dump_options,
    prebuilt_engine,
    session_options,
    write_engine_info,
)


def shapes(option: str) -> dict[str, str]:
    """'a:1x2,b:3x4,a:5x6' -> {'a': ['1x2', '5x6'], ...}: one entry per input and profile."""
    found = {}
    for entry in option.split(","):
        name, shape = entry.split(":")
        found.setdefault(name, []).append(shape)
    return found


def test_session_options_give_fp16_caches_per_model_and_a_prefill_and_a_step_profile(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEGEN_CACHE", str(tmp_path))
    manifest = Manifest.load(exported["mars"])
    options = session_options(manifest, 256, 32)
    assert options["trt_fp16_enable"] == "True"
    cache = options["trt_engine_cache_path"]
    assert cache == options["trt_timing_cache_path"] and cache.startswith(str(tmp_path / "tensorrt"))
    assert cache.endswith("-fp32-256") and manifest.source["weights_sha256"][:16] in cache
    kv = f"1x{manifest.num_kv_heads}x256x{manifest.head_dim}"
    for kind, (prefill, step) in {"min": ("1", "1"), "opt": ("256", "32"), "max": ("256", "32")}.items():
        found = shapes(options[f"trt_profile_{kind}_shapes"])
        assert found["input_ids"] == [f"1x{prefill}", f"1x{step}"]
        assert len(found) == 2 + 2 * manifest.num_layers
        assert found["past_key_values.1.value"] == [kv, kv]  # the shared KV buffers have one shape
    assert session_options(manifest, 128, 32)["trt_engine_cache_path"] != cache  # a context of its own


def test_dump_options_embed_the_engine_beside_the_graph(exported):
    options = dump_options(exported["mars"])
    assert options["trt_dump_ep_context_model"] == "True" and options["trt_ep_context_embed_mode"] == "1"
    assert options["trt_ep_context_file_path"] == os.fspath(exported["mars"] / ENGINE_FILE)


@pytest.fixture
def model_copy(exported, tmp_path):
    return shutil.copytree(exported["mars"], tmp_path / "model")


def test_a_prebuilt_engine_serves_only_the_context_it_was_built_for(model_copy):
    assert prebuilt_engine(model_copy, 256, 32) is None
    with pytest.raises(EdgegenError, match="wrote no EPContext model"):
        write_engine_info(model_copy, 256, 32)
    (model_copy / ENGINE_FILE).write_bytes(b"engine")
    write_engine_info(model_copy, 256, 32)
    assert prebuilt_engine(model_copy, 256, 32) == model_copy / ENGINE_FILE
    assert prebuilt_engine(model_copy, 128, 32) is None
    (model_copy / ENGINE_FILE).unlink()
    assert prebuilt_engine(model_copy, 256, 32) is None


def test_a_damaged_engine_record_is_a_clear_error(model_copy):
    (model_copy / ENGINE_INFO).write_text('{"file": "model.engine.onnx", "max_con')
    with pytest.raises(EdgegenError, match="build-engine .* --force"):
        prebuilt_engine(model_copy, 256, 32)


def test_a_model_with_an_engine_still_loads_where_there_is_no_tensorrt(model_copy):
    (model_copy / ENGINE_FILE).write_bytes(b"not loadable here")
    (model_copy / ENGINE_INFO).write_text(json.dumps({"file": ENGINE_FILE, "max_context": 256,
                                                      "max_block_tokens": 32}))
    model = load(model_copy, provider="auto", max_context=256)
    assert model.engine.provider == "CPUExecutionProvider"
    assert model.generate("x = 1", max_new_tokens=3).stats.new_tokens > 0


def test_build_engine_without_tensorrt_says_what_is_missing(model_copy):
    run = subprocess.run([sys.executable, "-m", "edgegen", "build-engine", str(model_copy)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 1 and "TensorRT execution provider" in run.stderr and "Traceback" not in run.stderr
    assert not (model_copy / ENGINE_INFO).exists()
