"""Top-k outputs against whole logit rows: the same tokens, and what each costs per decode step.

Runs one graph exported with `--topk K` two ways, alternating per prompt: reading the top-k outputs
(the default) and reading whole logit rows (`full_logits=True`); with --plain, also a graph of the same
weights exported without top-k outputs (its nodes run whether or not their outputs are read). Checks that
the tokens are identical and prints decode tokens/s per mode. Prints a table and writes JSON.

    python benchmarks/topk_outputs.py --model TOPK_MODEL [--plain MODEL] [--provider cuda]
"""
import os
import statistics
import sys
from pathlib import Path

import edgegen
from edgegen.bench import BUILTIN_PROMPTS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, benchmark_arguments, run_to_end, save_json  # noqa: E402

# fixed blocks: verify's adaptive pilot learns across generations, and a different plan feeds different step
# shapes, whose rounding can flip near-tied tokens of random weights
MODES = {"ar": {"mode": "ar"}, "verify": {"mode": "verify", "block_size": 4},
         "threshold": {"mode": "threshold", "block_size": 4, "threshold": 0.9}}


def main():
    parser = benchmark_arguments(__doc__.splitlines()[0], "topk_outputs")
    parser.add_argument("--plain", type=Path, help="the same weights exported without --topk")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--repeat", type=int, default=2)
    parser.set_defaults(max_new_tokens=64, out=HERE / "results" / "topk_outputs.json")
    args = parser.parse_args()
    model = edgegen.load(args.model, provider=args.provider, threads=args.threads, max_context=1024)
    if not model.manifest.graph.topk:
        raise SystemExit(f"{args.model} has no top-k outputs: export it with `edgegen export --topk K`")
    runs = {"top-k outputs": (model, {}), "whole rows": (model, {"full_logits": True})}
    if args.plain:
        plain = edgegen.load(args.plain, provider=args.provider, threads=args.threads, max_context=1024)
        runs["graph without top-k"] = (plain, {})
    prompts = [model.encode_prompt(p, chat=True) for p in BUILTIN_PROMPTS]
    rates = {(mode, label): [] for mode in MODES for label in runs}
    mismatches = dict.fromkeys(runs, 0)  # generations whose tokens differ from those read from whole rows
    for mode, options in MODES.items():
        for _ in range(args.repeat):
            for prompt in prompts:
                tokens = {}
                for label, (m, extra) in runs.items():
                    m.engine.rewind(0)  # a fresh prefill each time: a reused prompt KV would shift near-ties
                    result = run_to_end(m, prompt, max_new_tokens=args.max_new_tokens, **options, **extra)
                    rates[mode, label].append(result.stats.decode_tokens_per_s)
                    tokens[label] = result.token_ids
                for label in runs:
                    mismatches[label] += tokens[label] != tokens["whole rows"]
    rows = [{"mode": mode, "run": label, "decode_tok_s": statistics.median(rates[mode, label])}
            for mode, label in rates]
    print(f"{args.model.name}, provider {model.engine.provider}, top-k {model.manifest.graph.topk}, "
          f"vocab {model.manifest.vocab_size}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'mode':10} {'run':22} {'decode tok/s':>12}")
    for row in rows:
        print(f"{row['mode']:10} {row['run']:22} {row['decode_tok_s']:12.1f}")
    print("generations whose tokens differ from whole rows':", ", ".join(f"{k} {v}" for k, v in mismatches.items()))
    save_json(args.out, {"model": str(args.model), "provider": model.engine.provider, "topk": model.manifest.graph.topk,
                         "threads": args.threads, "max_new_tokens": args.max_new_tokens, "rows": rows,
                         "mismatched_generations": mismatches, "load_average": os.getloadavg()[0]})
    return 1 if mismatches["top-k outputs"] else 0


if __name__ == "__main__":
    sys.exit(main())
