"""TensorRT sessions: their options, and engines prebuilt on the device by `edgegen build-engine`.

A first TensorRT load parses the graph and builds engines, minutes for a 0.5B model. The engines are cached
per model, precision and context; `build-engine` goes further and writes an EPContext model beside the
graph (the engine embedded in an ONNX file, onnxruntime's `trt_dump_ep_context_model`), which later
loads read directly, skipping the parse and the build.
"""
import json
import os
from pathlib import Path

import onnxruntime as ort

from .cache import cache_dir
from .errors import EdgegenError
from .manifest import Manifest

ENGINE_FILE, ENGINE_INFO = "model.engine.onnx", "engine.json"
EMBED_LIMIT = 1 << 30  # protobuf files stop at 2 GiB: larger engines go to a file beside the EPContext model


def session_options(manifest: Manifest, max_context: int, max_block_tokens: int) -> dict:
    """fp16; engine and timing caches per model, precision and context; one optimization profile for prefill,
    one for decode and verify steps (1 .. max_block_tokens new tokens). The KV buffers have one fixed shape."""
    names = manifest.graph
    weights = manifest.source.get("weights_sha256", "unknown")[:16]
    caches = os.fspath(cache_dir() / "tensorrt" / f"{weights}-{manifest.weights or manifest.dtype}-{max_context}")
    options = {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True", "trt_engine_cache_path": caches,
               "trt_timing_cache_enable": "True", "trt_timing_cache_path": caches}
    kv = [f"{name % layer}:1x{manifest.num_kv_heads}x{max_context}x{manifest.head_dim}"
          for layer in range(manifest.num_layers) for name in (names.past_key, names.past_value)]
    typical = min(256, max_context)
    shapes = {"min": (1, 1, 1, 1), "opt": (typical, typical, max_block_tokens, max_context // 2),
              "max": (max_context, max_context, max_block_tokens, max_context)}
    for kind, (prefill, prefill_total, step, step_total) in shapes.items():
        options[f"trt_profile_{kind}_shapes"] = ",".join([
            f"{names.input_ids}:1x{prefill}", f"{names.attention_mask}:1x{prefill_total}", *kv,
            f"{names.input_ids}:1x{step}", f"{names.attention_mask}:1x{step_total}", *kv])
    return options


def prebuilt_engine(model_dir: Path, max_context: int, max_block_tokens: int) -> Path | None:
    """The EPContext model `build-engine` wrote for this context and block length, if there is one."""
    info_path = Path(model_dir) / ENGINE_INFO
    if not info_path.is_file():
        return None
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        matches = (info["max_context"], info["max_block_tokens"]) == (max_context, max_block_tokens)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise EdgegenError(f"{info_path} is damaged ({e}); delete it, or rebuild with: "
                           f"edgegen build-engine {model_dir} --force") from e
    engine = Path(model_dir) / info["file"]
    return engine if matches and engine.is_file() else None


def dump_options(model_dir: Path) -> dict:
    """What makes a TensorRT session write its engines as an EPContext model beside the graph."""
    graph_bytes = sum(f.stat().st_size for f in Path(model_dir).glob("model.onnx*"))
    return {"trt_dump_ep_context_model": "True", "trt_ep_context_file_path": os.fspath(Path(model_dir) / ENGINE_FILE),
            "trt_ep_context_embed_mode": "1" if graph_bytes < EMBED_LIMIT else "0"}


def require_tensorrt() -> None:
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise EdgegenError("building an engine needs onnxruntime with the TensorRT execution provider, which this "
                           f"onnxruntime ({ort.__version__}, providers {', '.join(ort.get_available_providers())}) "
                           "lacks; run build-engine on the target device with onnxruntime-gpu and TensorRT "
                           "installed (`edgegen doctor` shows what is missing)")


def write_engine_info(model_dir: Path, max_context: int, max_block_tokens: int) -> Path:
    if not (Path(model_dir) / ENGINE_FILE).is_file():
        raise EdgegenError(f"onnxruntime {ort.__version__} wrote no EPContext model ({ENGINE_FILE}); it needs "
                           "onnxruntime-gpu >= 1.17 with TensorRT 8.6 or later")
    info = {"file": ENGINE_FILE, "max_context": max_context, "max_block_tokens": max_block_tokens,
            "onnxruntime": ort.__version__}
    path = Path(model_dir) / ENGINE_INFO
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return path
