"""Decode speed and the NumPy loop's own cost, on a Qwen2.5-0.5B-shaped random checkpoint.

Random weights do not change speed (they do change acceptance, so block decoding here runs at
threshold 0, accepting every block, to show the cost of a block step). Prints a table and
writes JSON.

    python benchmarks/decode_loop.py --out benchmarks/results/decode_loop.json
"""
import argparse
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import onnxruntime

import edgegen
from edgegen.export import export_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_to_end, save_json  # noqa: E402

QWEN05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
               intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
               tie_word_embeddings=True, rms_norm_eps=1e-6)


def make_checkpoint(path: Path, layers: int) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if (path / "config.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):  # any tokenizer with <|mask|>: the bundled model's
        shutil.copy2(edgegen.DEFAULT_MODEL / name, path / name)
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**{**QWEN05B, "num_hidden_layers": layers})).save_pretrained(path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgegen-bench"))
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decode_loop.json"))
    args = parser.parse_args()

    checkpoint = make_checkpoint(args.work / f"qwen05b-{args.layers}l", args.layers)
    model_dir = args.work / f"qwen05b-{args.layers}l-{args.dtype}"
    if not (model_dir / "edgegen.json").is_file():
        started = time.perf_counter()
        export_model(checkpoint, model_dir, dtype=args.dtype, max_context=4096, verify=False)
        print(f"export took {time.perf_counter() - started:.1f}s", file=sys.stderr)
    model = edgegen.load(model_dir, provider="cpu", threads=args.threads)
    prompt = list(range(1000, 1000 + args.prompt_tokens))
    configs = {"AR": dict(block_size=1), "block 4 (all accepted)": dict(block_size=4, threshold=0.0),
               "block 8 (all accepted)": dict(block_size=8, threshold=0.0)}
    rows = []
    for name, options in configs.items():
        run_to_end(model, prompt, max_new_tokens=8, **options)  # warm-up
        samples = []
        for _ in range(args.repeats):
            model.engine.rewind(0)  # measure a full prefill every time
            samples.append(run_to_end(model, prompt, max_new_tokens=args.new_tokens, **options))
        steps = [s.forwards - 1 for s in samples]
        row = {
            "mode": name,
            "ttft_ms": statistics.median(s.ttft_ms for s in samples),
            "decode_tokens_per_s": statistics.median(s.decode_tokens_per_s for s in samples),
            "tokens_per_forward": statistics.median(s.tokens_per_forward for s in samples),
            "forward_ms_per_step": statistics.median((s.forward_ms - s.prefill_ms) / n for s, n in zip(samples, steps)),
            "loop_ms_per_step": statistics.median(s.loop_overhead_ms / n for s, n in zip(samples, steps)),
        }
        row["loop_share"] = row["loop_ms_per_step"] / (row["loop_ms_per_step"] + row["forward_ms_per_step"])
        rows.append(row)

    header = f"{'mode':<24}{'TTFT ms':>9}{'decode tok/s':>14}{'tok/fwd':>9}{'fwd ms/step':>13}{'loop ms/step':>14}" \
             f"{'loop share':>12}"
    print(header)
    for r in rows:
        print(f"{r['mode']:<24}{r['ttft_ms']:>9.0f}{r['decode_tokens_per_s']:>14.1f}{r['tokens_per_forward']:>9.2f}"
              f"{r['forward_ms_per_step']:>13.2f}{r['loop_ms_per_step']:>14.3f}{r['loop_share']:>11.1%}")
    save_json(args.out, {
        "model": f"Qwen2.5-0.5B shape, {args.layers} layers, random weights, {args.dtype}",
        "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": args.threads,
        "onnxruntime": onnxruntime.__version__, "machine": platform.processor() or platform.machine(),
        "rows": rows})
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
