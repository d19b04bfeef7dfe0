"""`edgegen export-memory`: a latent-memory compressor -> compress.onnx, query.onnx and memory.json.

A compressor is a base LM with two LoRA adapters (`compress` for evidence, `query` for questions),
a learned [MEM] vector appended after the text, and two heads on the final-norm hidden state h at
that position: retrieval_proj (Linear -> LayerNorm, then L2-normalized) and cross_proj (Linear ->
exact GELU -> Linear -> LayerNorm) into the generator's embedding space. Each graph merges its
adapter into the base weights (W + scale * B @ A) and has its heads folded in, so the runtime
gets finished vectors from one session call.
"""
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..runtime.compressor import MEMORY_MANIFEST, CompressorManifest
from .checkpoint import SafetensorsFile, Weights, read_json, read_model_spec
from .errors import ExportError
from .exporter import staged_output
from .graph import GraphBuilder, finish_model, gqa_attention, rope_caches, transformer

STATE_FILE, STATE_CONFIG = "memory.safetensors", "memory_config.json"  # the project's own layout


def read_state(src: Path, trust_pickle: bool) -> tuple[dict, dict]:
    """The trained state as flat float32 arrays ("mem_embedding", "retrieval_proj.0.weight",
    "lora_compress.<peft key>", ...) and its config, from either layout."""
    if (src / STATE_FILE).is_file():
        tensors = SafetensorsFile(src / STATE_FILE)
        return {name: tensors.read(name).astype(np.float32) for name in tensors.tensors}, \
            read_json(src / STATE_CONFIG) if (src / STATE_CONFIG).is_file() else {}
    pickles = sorted(src.glob("*.pt")) + sorted(src.glob("*.pth"))
    if not pickles:
        raise ExportError(f"missing file {src / STATE_FILE} (or the reference's *.pt checkpoint) in {src}")
    if not trust_pickle:
        raise ExportError(f"{pickles[0]} is a pickle, which can run code when loaded; pass --trust-pickle if you "
                          "trust where it came from")
    try:
        import torch
    except ImportError as e:
        raise ExportError("reading a .pt checkpoint needs torch: pip install -e '.[export]'") from e
    checkpoint = torch.load(pickles[0], map_location="cpu", weights_only=False)
    state = {"mem_embedding": checkpoint["mem_embedding"]}
    for group in ("retrieval_proj", "cross_proj", "lora_compress", "lora_query"):
        state.update({f"{group}.{key}": value for key, value in checkpoint.get(group, {}).items()})
    return {k: v.float().numpy() for k, v in state.items()}, checkpoint.get("config", {})


class MergedWeights:
    """Base weights with one LoRA adapter folded in: W + scale * B @ A."""

    def __init__(self, base: Weights, state: dict, adapter: str, scale: float):
        self.base, self.deltas = base, {}
        prefix = f"lora_{adapter}."
        for key, a in state.items():
            if key.startswith(prefix) and ".lora_A." in key:
                module = key[len(prefix):].split(".lora_A.")[0].removeprefix("base_model.model.")
                b = state[key.replace(".lora_A.", ".lora_B.")]
                self.deltas[module + ".weight"] = scale * (b @ a)
        if not self.deltas:
            raise ExportError(f"the checkpoint has no LoRA weights for adapter {adapter!r} (keys lora_{adapter}.*)")

    def __contains__(self, name: str) -> bool:
        return name in self.base

    def get(self, name: str) -> np.ndarray:
        weight = self.base.get(name)
        return weight + self.deltas[name] if name in self.deltas else weight


def dense(g: GraphBuilder, x: str, state: dict, prefix: str) -> str:
    return g.op("Add", [g.op("MatMul", [x, g.weight(prefix + ".weight_T", state[prefix + ".weight"].T)]),
                        g.weight(prefix + ".bias", state[prefix + ".bias"])])


def layer_norm(g: GraphBuilder, x: str, state: dict, prefix: str) -> str:
    return g.op("LayerNormalization", [x, g.weight(prefix + ".weight", state[prefix + ".weight"]),
                                       g.weight(prefix + ".bias", state[prefix + ".bias"])], axis=-1, epsilon=1e-5)


def build_encoder(spec, weights: MergedWeights, state: dict, max_tokens: int, with_projection: bool):
    """input_ids [1, L] -> latent h [1, H], retrieval [1, R] (unit length), and projected [1, G]."""
    g = GraphBuilder("fp32")
    embed = g.weight("model.embed_tokens.weight", weights.get("model.embed_tokens.weight"))
    mem = g.weight("mem_embedding", state["mem_embedding"].reshape(-1, spec.hidden_size)[:1][None])
    embeds = g.op("Concat", [g.op("Gather", [embed, "input_ids"]), mem], axis=1)  # [MEM] after the text
    total = g.op("Add", [g.op("Gather", [g.op("Shape", ["input_ids"]), g.const(1)]), g.const(1)])
    positions = g.op("Unsqueeze", [g.op("Range", [g.const(0), total, g.const(1)]), g.const([0])])
    seqlens_k = g.op("Cast", [g.op("Reshape", [g.op("Sub", [total, g.const(1)]), g.const([1])])],
                     to=TensorProto.INT32)
    attend = gqa_attention(seqlens_k, g.op("Cast", [total], to=TensorProto.INT32), positions,
                           rope_caches(g, spec, max_tokens + 1), kv_cache=False)
    x = transformer(g, spec, weights, embeds, attend)
    h = g.op("Gather", [x, g.const(-1)], ["latent"], axis=1)
    retrieval = layer_norm(g, dense(g, h, state, "retrieval_proj.0"), state, "retrieval_proj.1")
    g.op("LpNormalization", [retrieval], ["retrieval"], axis=-1, p=2)
    outputs = [helper.make_tensor_value_info("latent", TensorProto.FLOAT, [1, spec.hidden_size]),
               helper.make_tensor_value_info("retrieval", TensorProto.FLOAT, [1, "retrieval_dim"])]
    if with_projection:
        hidden = dense(g, h, state, "cross_proj.net.0")
        gelu = g.op("Mul", [g.op("Mul", [hidden, g.const(0.5, np.float32)]), g.op("Add", [
            g.op("Erf", [g.op("Mul", [hidden, g.const(1 / np.sqrt(2), np.float32)])]), g.const(1.0, np.float32)])])
        projected = layer_norm(g, dense(g, gelu, state, "cross_proj.net.2"), state, "cross_proj.net.3")
        g.op("Identity", [projected], ["projected"])
        outputs.append(helper.make_tensor_value_info("projected", TensorProto.FLOAT, [1, "generator_hidden"]))
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence_length"])]
    return finish_model(g, "edgegen_compressor", inputs, outputs)


def export_memory(src: Path, out: Path, base: Path | None = None, trust_pickle: bool = False,
                  lora_scale: float | None = None, max_tokens: int | None = None,
                  force: bool = False) -> CompressorManifest:
    src, out = Path(src), Path(out)
    base = Path(base) if base else src / "base"
    if not base.is_dir():
        raise ExportError(f"missing base compressor checkpoint {base}; pass --base DIR")
    state, config = read_state(src, trust_pickle)
    scale = lora_scale or config.get("lora_scale") or 2.0  # the reference trains r=64, alpha=128
    max_tokens = max_tokens or config.get("max_evidence_tokens") or 128  # the reference's truncation
    spec = read_model_spec(base)
    weights = Weights(base)
    with staged_output(out, src, force, marker=MEMORY_MANIFEST) as staging:
        for adapter, with_projection in (("compress", True), ("query", False)):
            graph = build_encoder(spec, MergedWeights(weights, state, adapter, scale), state, max_tokens,
                                  with_projection)
            onnx.save_model(graph, os.fspath(staging / f"{adapter}.onnx"))
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(base / name, staging / name)
        manifest = CompressorManifest(
            compressor_hidden=spec.hidden_size, retrieval_dim=int(state["retrieval_proj.0.weight"].shape[0]),
            generator_hidden=int(state["cross_proj.net.2.weight"].shape[0]), max_evidence_tokens=max_tokens,
            lora_scale=float(scale), generator=config.get("generator", {}),
            checksum={"base_weights_sha256": weights.sha256(), "state_sha256": state_checksum(state)})
        manifest.save(staging)
    return manifest


def state_checksum(state: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(state[name], np.float32).tobytes())
    return digest.hexdigest()
