"""AR, MARS threshold and lossless verify decoding, each with a fixed and an automatic block size.

    python benchmarks/block_modes.py                     # the bundled model, held-out prompts, CPU

Every configuration decodes the same held-out prompts; configurations alternate across rounds so
that machine noise spreads evenly. Prints one table, writes JSON and a PNG bar chart.
"""
import statistics
import sys
from pathlib import Path

from common import benchmark_arguments, load_prompts, run_to_end, save_json, tokens_per_forward

import edgegen

CONFIGS = {
    "AR": dict(mode="ar"),
    **{f"threshold {tau} {size}": dict(mode="threshold", threshold=tau, block_size=size)
       for tau in (1.0, 0.9, 0.8) for size in ("fixed", "auto")},
    "verify fixed": dict(mode="verify", block_size="fixed"),
    "verify auto": dict(mode="verify", block_size="auto"),
}


def measure(model, prompts, options: dict, max_new_tokens: int) -> dict:
    results = [run_to_end(model, ids, max_new_tokens=max_new_tokens, **options) for ids in prompts]
    seconds = [(r.stats.total_ms - r.stats.ttft_ms) / 1000 for r in results]  # after the first forward
    decode_tokens = sum(r.stats.decode_tokens_per_s * s for r, s in zip(results, seconds))
    return {"tokens": [r.token_ids for r in results],
            "tokens_per_forward": tokens_per_forward(results),
            "decode_tokens_per_s": decode_tokens / sum(seconds),
            "drafts_accepted_share": sum(r.stats.drafts_accepted for r in results)
            / max(1, sum(r.stats.drafts_proposed for r in results))}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.bar([r["config"] for r in rows], [r["decode_tokens_per_s"] for r in rows],
                  color=["tab:gray" if r["config"] == "AR" else "tab:green" if "verify" in r["config"]
                         else "tab:blue" for r in rows])
    for bar, row in zip(bars, rows):
        ax.annotate(f"{row['tokens_per_forward']:.2f}/fwd", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("decode tokens/s")
    ax.set_title("Decoding modes on held-out prompts (label: tokens per forward)")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], "block_modes")
    parser.add_argument("--task", help="only the prompts of this task (the prompts file's \"task\" field)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model = edgegen.load(args.model, provider="cpu", threads=args.threads)
    fixed = model.manifest.block_size or 4
    rows, prompts = load_prompts(model, args.prompts, args.max_new_tokens)
    prompts = [ids for row, ids in zip(rows, prompts) if args.task in (None, row.get("task"))]
    configs = {name: {k: fixed if v == "fixed" else v for k, v in options.items()} for name, options in CONFIGS.items()}
    measure(model, prompts[:3], {"mode": "verify", "block_size": "auto"}, 8)  # warm-up and cost curve
    rounds = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name in (list(configs) if round_ % 2 == 0 else reversed(list(configs))):
            rounds[name].append(measure(model, prompts, configs[name], args.max_new_tokens))
            print(f"round {round_ + 1}/{args.rounds}: {name}", file=sys.stderr)
    ar_tokens, ar_speed = rounds["AR"][0]["tokens"], statistics.median(r["decode_tokens_per_s"] for r in rounds["AR"])
    rows = []
    for name, runs in rounds.items():
        speed = statistics.median(r["decode_tokens_per_s"] for r in runs)
        rows.append({"config": name, **configs[name],
                     "tokens_per_forward": runs[0]["tokens_per_forward"], "decode_tokens_per_s": speed,
                     "speedup_vs_ar": speed / ar_speed,
                     "identical_to_ar": sum(a == b for a, b in zip(runs[0]["tokens"], ar_tokens)) / len(prompts),
                     "drafts_accepted_share": runs[0]["drafts_accepted_share"]})
    print(f"{len(prompts)} held-out prompts ({args.task or 'all tasks'}), up to {args.max_new_tokens} new tokens, "
          f"{args.threads} threads, median of {args.rounds} rounds; fixed block size {fixed}")
    print(f"{'config':<22}{'tokens/fwd':>11}{'tok/s':>9}{'vs AR':>8}{'same as AR':>12}")
    for r in rows:
        print(f"{r['config']:<22}{r['tokens_per_forward']:>11.2f}{r['decode_tokens_per_s']:>9.0f}"
              f"{r['speedup_vs_ar']:>7.2f}x{r['identical_to_ar']:>12.0%}")
    save_json(args.out, {"model": str(args.model or edgegen.DEFAULT_MODEL), "task": args.task,
                         "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "rounds": args.rounds,
                         "threads": args.threads,
                         "cost_curve": {"sizes": model.cost_curve.sizes, "seconds": model.cost_curve.seconds},
                         "rows": rows})
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
