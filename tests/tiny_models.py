"""Tiny random-weight checkpoints and a trained byte-level BPE tokenizer, built locally (no downloads)."""
import json
import sysconfig
from pathlib import Path

from edgegen.train.tokenizer import train_tokenizer

EXTRA_TEXT = "héllo wörld, naïve café — 日本語のテキスト 🎉🚀 ünïcödé ✓\n" * 20


def training_corpus() -> list[str]:
    """Python's own standard library sources: text that exists offline on every machine."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("json/*.py")) + sorted(stdlib.glob("email/*.py"))[:10]
    return [f.read_text(encoding="utf-8", errors="ignore") for f in files] + [EXTRA_TEXT]


def save_tokenizer(out: Path, with_mask: bool, vocab_size: int = 512) -> int:
    return train_tokenizer(training_corpus(), out, vocab_size, with_mask, show_progress=False)


CLASSES = {"qwen2": ("Qwen2Config", "Qwen2ForCausalLM"), "llama": ("LlamaConfig", "LlamaForCausalLM"),
           "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"), "mistral": ("MistralConfig", "MistralForCausalLM"),
           "phi3": ("Phi3Config", "Phi3ForCausalLM"), "gemma2": ("Gemma2Config", "Gemma2ForCausalLM"),
           "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM")}


def save_model(out: Path, arch: str = "qwen2", with_mask: bool = True, dtype: str = "float32",
               shard: bool = False, config_format: str = "5.x", mars: bool = False, seed: int = 0,
               vocab_size: int | None = None, zero_biases: bool = False, **config) -> Path:
    """A 2-layer random model; initializer_range 0.2 keeps its logits far from flat, so argmax ties are rare.
    Biases are random too, as in trained models (transformers initializes them to zero)."""
    import torch
    import transformers

    out.mkdir(parents=True, exist_ok=True)
    vocab = save_tokenizer(out, with_mask)
    torch.manual_seed(seed)
    config_class, model_class = (getattr(transformers, name) for name in CLASSES[arch])
    sizes = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128, "max_position_embeddings": 256, "head_dim": 16,
             "tie_word_embeddings": arch in ("qwen2", "gemma2", "gemma3_text"), **config}
    model = model_class(config_class(**sizes, vocab_size=vocab_size or (vocab + 63) // 64 * 64,
                                     initializer_range=0.2, eos_token_id=2, bos_token_id=1,
                                     pad_token_id=0)).to(getattr(torch, dtype))
    if not zero_biases:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.endswith(".bias"):
                    parameter.normal_(0.0, 0.2)
    model.save_pretrained(out, max_shard_size="100KB" if shard else "5GB")
    if mars or config_format == "4.x":
        rewrite_config(out / "config.json", arch if mars else None, config_format)
    return out


def rewrite_config(path: Path, mars: str | None, config_format: str) -> None:
    """Turn a saved config into a MARS release config and/or the transformers 4.x key layout."""
    config = json.loads(path.read_text())
    if mars:
        name = mars.capitalize()  # the release layout: a2d-qwen2, A2DQwen2LMHeadModel
        config.update(model_type=f"a2d-{mars}", architectures=[f"A2D{name}LMHeadModel"], block_size=4)
    if config_format == "4.x":
        rope = config.pop("rope_parameters")
        config["rope_theta"] = rope["rope_theta"]
        config["torch_dtype"] = config.pop("dtype")
        config["transformers_version"] = "4.57.6"
    path.write_text(json.dumps(config, indent=2))
