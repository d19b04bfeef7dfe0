"""Write a bundled qwen2 model (edgegen/models/default, or the latent-RAG generator) back out as the Hugging Face
checkpoint it was exported from, so that training can start from it without rebuilding it (build.sh: 50 minutes).

The fp32 graph holds every weight: q/k/v packed along the output dimension and transposed (`*.weight_T`), the
embedding tied to the output head. Exporting the checkpoint again gives the same weights, bit for bit.

    python examples/default_model/from_onnx.py OUT_DIR [--model edgegen/models/default]
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import Qwen2Config, Qwen2ForCausalLM

from edgegen.models import DEFAULT_MODEL
from edgegen.runtime.errors import EdgegenError
from edgegen.runtime.manifest import Manifest

COPIED = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def weights_of(graph_path: Path) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in onnx.load(graph_path).graph.initializer}


def rope_theta(cos: np.ndarray, head_dim: int) -> float:
    """The base the rotary table was built with: its second frequency is theta^(-2/head_dim)."""
    return float(np.arccos(cos[1, 1]) ** (-head_dim / 2))


def state_dict(weights: dict, manifest) -> dict[str, torch.Tensor]:
    q_size, kv_size = manifest.num_attention_heads * manifest.head_dim, manifest.num_kv_heads * manifest.head_dim
    state = {"model.embed_tokens.weight": weights["model.embed_tokens.weight"],
             "model.norm.weight": weights["model.norm.weight"]}
    for name, value in weights.items():
        if not name.startswith("model.layers."):
            continue
        if name.endswith("q_proj.weight_T"):
            q, k, v = np.split(value.T, [q_size, q_size + kv_size])
            state |= {name.replace("q_proj.weight_T", f"{p}_proj.weight"): w for p, w in zip("qkv", (q, k, v))}
        elif name.endswith("q_proj.bias_packed"):
            q, k, v = np.split(value, [q_size, q_size + kv_size])
            state |= {name.replace("q_proj.bias_packed", f"{p}_proj.bias"): b for p, b in zip("qkv", (q, k, v))}
        elif name.endswith(".weight_T"):
            state[name.removesuffix("_T")] = value.T
        else:
            state[name] = value
    return {name: torch.from_numpy(np.array(value)) for name, value in state.items()}


def main(model_dir: Path, out: Path) -> None:
    manifest = Manifest.load(model_dir)
    if manifest.architecture != "qwen2" or manifest.dtype != "fp32":
        raise SystemExit(f"{model_dir} is {manifest.architecture} {manifest.dtype}; this reads fp32 qwen2 exports")
    weights = weights_of(model_dir / manifest.graph.file)
    state = state_dict(weights, manifest)
    config = Qwen2Config(hidden_size=manifest.hidden_size, num_hidden_layers=manifest.num_layers,
                         num_attention_heads=manifest.num_attention_heads, num_key_value_heads=manifest.num_kv_heads,
                         intermediate_size=state["model.layers.0.mlp.up_proj.weight"].shape[0],
                         vocab_size=manifest.vocab_size, max_position_embeddings=manifest.max_context,
                         tie_word_embeddings=True, eos_token_id=manifest.eos_token_ids[0],
                         pad_token_id=manifest.pad_token_id,
                         rope_theta=round(rope_theta(weights["rope_cos"], manifest.head_dim)))
    model = Qwen2ForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise SystemExit(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)
    if manifest.block_size:  # a MARS release: the layout `edgegen train mars` writes
        config_path = out / "config.json"
        saved = json.loads(config_path.read_text())
        saved |= {"model_type": "a2d-qwen2", "architectures": ["A2DQwen2LMHeadModel"],
                  "block_size": manifest.block_size}
        config_path.write_text(json.dumps(saved, indent=2) + "\n")
    for name in COPIED:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out / name)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter checkpoint written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    try:
        main(args.model, args.out)
    except EdgegenError as error:
        raise SystemExit(f"error: {error}") from None
