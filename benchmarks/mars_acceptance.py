"""MARS threshold sweep on held-out prompts: tokens per forward and agreement with AR greedy decoding.

    python benchmarks/mars_acceptance.py                      # the bundled model
    python benchmarks/mars_acceptance.py --model DIR --prompts FILE.jsonl

Prints a table, writes JSON and a PNG plot (tokens/forward and agreement against the threshold).
Agreement: the share of prompts whose output is token-for-token the AR greedy output, and the
mean share of each AR output that the block output reproduces before its first difference.
"""
import statistics
import sys
from pathlib import Path

from common import benchmark_arguments, load_prompts, run_to_end, save_json, tokens_per_forward

import edgegen

THRESHOLDS = [1.0, 0.95, 0.9, 0.8, 0.7]


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def sweep(model, rows: list[dict], prompts: list[list[int]], block_size: int, max_new_tokens: int) -> list[dict]:
    reference = [run_to_end(model, ids, mode="ar", max_new_tokens=max_new_tokens) for ids in prompts]
    table = []
    for threshold in THRESHOLDS:
        results = [run_to_end(model, ids, mode="threshold", block_size=block_size, threshold=threshold,
                              max_new_tokens=max_new_tokens) for ids in prompts]
        per_task = {}
        for row, result in zip(rows, results):
            per_task.setdefault(row.get("task", "all"), []).append(result)
        table.append({
            "threshold": threshold,
            "tokens_per_forward": tokens_per_forward(results),
            "identical_outputs": sum(r.token_ids == a.token_ids for r, a in zip(results, reference)) / len(rows),
            "agreement": statistics.mean(common_prefix(r.token_ids, a.token_ids) / max(1, len(a.token_ids))
                                         for r, a in zip(results, reference)),
            "decode_tokens_per_s": statistics.median(r.stats.decode_tokens_per_s for r in results),
            "tokens_per_forward_by_task": {task: tokens_per_forward(v) for task, v in sorted(per_task.items())},
        })
    ar_speed = statistics.median(r.stats.decode_tokens_per_s for r in reference)
    return table, ar_speed


def plot(table: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = [row["threshold"] for row in table]
    fig, left = plt.subplots(figsize=(6, 4))
    left.plot(taus, [row["tokens_per_forward"] for row in table], "o-", color="tab:blue")
    left.set_xlabel("threshold τ")
    left.set_ylabel("tokens per forward", color="tab:blue")
    left.invert_xaxis()
    right = left.twinx()
    right.plot(taus, [row["agreement"] for row in table], "s--", color="tab:orange", label="agreement")
    right.plot(taus, [row["identical_outputs"] for row in table], "^:", color="tab:red", label="identical outputs")
    right.set_ylabel("agreement with AR greedy", color="tab:orange")
    right.set_ylim(0, 1.05)
    right.legend(loc="lower left")
    left.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = benchmark_arguments(__doc__.splitlines()[0], "mars_acceptance")
    parser.add_argument("--block-size", type=int, help="default: the model's trained block size")
    args = parser.parse_args()

    model = edgegen.load(args.model, provider="cpu", threads=args.threads)
    block_size = args.block_size or model.manifest.block_size
    rows, prompts = load_prompts(model, args.prompts, args.max_new_tokens)
    table, ar_speed = sweep(model, rows, prompts, block_size, args.max_new_tokens)

    print(f"{len(rows)} held-out prompts, block size {block_size}, up to {args.max_new_tokens} new tokens; "
          f"AR greedy decodes at {ar_speed:.0f} tokens/s")
    print(f"{'τ':>5} {'tokens/forward':>15} {'identical':>10} {'agreement':>10} {'decode tok/s':>13}")
    for row in table:
        print(f"{row['threshold']:>5.2f} {row['tokens_per_forward']:>15.2f} {row['identical_outputs']:>10.0%} "
              f"{row['agreement']:>10.0%} {row['decode_tokens_per_s']:>13.0f}")
    save_json(args.out, {"model": str(args.model or edgegen.DEFAULT_MODEL), "prompts": str(args.prompts),
                         "block_size": block_size, "max_new_tokens": args.max_new_tokens,
                         "ar_decode_tokens_per_s": ar_speed, "rows": table})
    plot(table, args.out.with_suffix(".png"), f"MARS threshold sweep, block size {block_size}")
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
