"""A random-weight Qwen2.5-0.5B-shaped checkpoint (fp16) with another checkpoint's tokenizer, for speed and
GPU checks where no real weights may be downloaded.

    python benchmarks/random_checkpoint.py TOKENIZER_CHECKPOINT OUT
"""
import shutil
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

QWEN25_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                  tie_word_embeddings=True, rms_norm_eps=1e-6)


def main(tokenizer_dir: Path, out: Path) -> None:
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**QWEN25_05B)).to(torch.float16).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
