"""Rebuild a Hugging Face qwen2 checkpoint from an fp32 edgegen export (the bundled model ships only ONNX),
so that onnxruntime-genai's builder can build a model from exactly the same weights.

    python benchmarks/checkpoint_from_onnx.py edgegen/models/default /tmp/default-hf

The initializers keep the checkpoint's names (`*.weight_T` is the transposed weight, q/k/v are packed
side by side, gate/up too in older exports). The script checks transformers' logits on the rebuilt
checkpoint against the ONNX graph's before it returns.
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def rope_theta(inv_freq: np.ndarray, head_dim: int) -> float:
    """inv_freq[i] = theta ** (-2i / d), so theta = inv_freq[1] ** (-d / 2)."""
    return float(round(inv_freq[1] ** (-head_dim / 2)))


def rebuild(export_dir: Path, out: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    manifest = json.loads((export_dir / "edgegen.json").read_text())
    if manifest["dtype"] != "fp32" or manifest.get("weights"):
        raise SystemExit("rebuild needs an fp32 export")
    graph = onnx.load(export_dir / manifest["graph"]["file"]).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    eps = next(float(f"{a.f:.6g}") for n in graph.node if n.op_type == "SimplifiedLayerNormalization"
               for a in n.attribute if a.name == "epsilon")
    heads, kv_heads, d = manifest["num_attention_heads"], manifest["num_kv_heads"], manifest["head_dim"]
    layers, hidden = manifest["num_layers"], manifest["hidden_size"]
    down = weights["model.layers.0.mlp.down_proj.weight_T"]
    inv_freq = np.arccos(np.clip(weights["rope_cos"][1], -1, 1))
    config = Qwen2Config(vocab_size=manifest["vocab_size"], hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=down.shape[0],
                         max_position_embeddings=manifest["max_context"], rms_norm_eps=eps,
                         rope_theta=rope_theta(inv_freq, d), tie_word_embeddings="lm_head.weight_T" not in weights,
                         eos_token_id=manifest["eos_token_ids"][0], pad_token_id=manifest["pad_token_id"])
    state = {"model.embed_tokens.weight": weights["model.embed_tokens.weight"],
             "model.norm.weight": weights["model.norm.weight"]}
    if "lm_head.weight_T" in weights:
        state["lm_head.weight"] = weights["lm_head.weight_T"].T
    for i in range(layers):
        p = f"model.layers.{i}"
        qkv, bias = weights[f"{p}.self_attn.q_proj.weight_T"].T, weights.get(f"{p}.self_attn.q_proj.bias_packed")
        cuts = np.cumsum([heads * d, kv_heads * d])
        for name, w in zip("qkv", np.split(qkv, cuts)):
            state[f"{p}.self_attn.{name}_proj.weight"] = w
        for name, b in zip("qkv", np.split(bias, cuts) if bias is not None else []):
            state[f"{p}.self_attn.{name}_proj.bias"] = b
        state[f"{p}.self_attn.o_proj.weight"] = weights[f"{p}.self_attn.o_proj.weight_T"].T
        gate = weights[f"{p}.mlp.gate_proj.weight_T"].T
        if f"{p}.mlp.up_proj.weight_T" in weights:
            state[f"{p}.mlp.gate_proj.weight"], state[f"{p}.mlp.up_proj.weight"] = \
                gate, weights[f"{p}.mlp.up_proj.weight_T"].T
        else:  # older exports packed gate and up into one MatMul
            state[f"{p}.mlp.gate_proj.weight"], state[f"{p}.mlp.up_proj.weight"] = np.split(gate, 2)
        state[f"{p}.mlp.down_proj.weight"] = weights[f"{p}.mlp.down_proj.weight_T"].T
        state[f"{p}.input_layernorm.weight"] = weights[f"{p}.input_layernorm.weight"]
        state[f"{p}.post_attention_layernorm.weight"] = weights[f"{p}.post_attention_layernorm.weight"]
    model = Qwen2ForCausalLM(config)
    missing = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
                                    strict=False)
    if missing.unexpected_keys or set(missing.missing_keys) - {"lm_head.weight"}:
        raise SystemExit(f"weights do not fit the config: {missing}")
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (export_dir / name).is_file():
            shutil.copy(export_dir / name, out / name)
    check(export_dir, model)
    return out


def check(export_dir: Path, model) -> None:
    """The rebuilt checkpoint must give the graph's logits (edgegen's AR on both sides would then agree)."""
    import torch

    import edgegen

    engine = edgegen.load(export_dir, provider="cpu").engine
    ids = [(37 * i + 11) % engine.manifest.vocab_size for i in range(24)]
    onnx_logits = engine.logits(ids, len(ids))
    with torch.inference_mode():
        torch_logits = model(torch.tensor([ids])).logits[0].numpy()
    diff = float(np.abs(onnx_logits - torch_logits).max())
    if diff > 1e-3:
        raise SystemExit(f"rebuilt checkpoint differs from the graph: max logit difference {diff:.2e}")
    print(f"rebuilt checkpoint matches the graph (max logit difference {diff:.1e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    rebuild(args.export_dir, args.out)


if __name__ == "__main__":
    main()
