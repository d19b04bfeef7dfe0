"""Where one decode step's time goes, beside onnxruntime-genai's step on the same weights.

Times each part of edgegen's step (onnxruntime's run, binding inputs and outputs, choosing drafts, the
sampler, detokenizing and stop strings, the rest of the Python loop) with a clock around each, in AR mode
and in the default verify mode, alternating with genai's `generate_next_token` prompt by prompt. The
"onnxruntime run" line is the floor for any runtime on this graph. Prints a table and writes JSON.

    python benchmarks/step_profile.py --genai-model GENAI_DIR [--model MODEL] [--prompts P.jsonl]
"""
import argparse
import sys
import time
from pathlib import Path

import edgegen
from edgegen.bench import GenaiRunner, Row, read_prompts
from edgegen.runtime import decoding, text
from edgegen.runtime import model as model_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, save_json  # noqa: E402

PARTS = {  # part -> (object, method) whose calls are timed
    "onnxruntime run": None,  # the session's run_with_iobinding, patched on the instance
    "engine.forward (run + binding)": (decoding.Engine, "forward"),
    "draft choice (pilot, lookup)": (decoding.DraftPilot, "plan"),
    "pilot learning": (decoding.DraftPilot, "observe"),
    "sampler / verify": (decoding, "verify_drafts"),
    "sampler (AR)": (decoding.Sampler, "sample"),
    "text: detokenize + stop strings": (model_module.Generation, "_commit"),
    "  of which detokenize": (text.IncrementalDecoder, "push"),
}


class Clock:
    """Accumulates the time spent in each timed part once `counting` (the decode steps after a prefill)."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self.counting = False

    def wrap(self, owner, name: str, part: str, then=None) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if self.counting:
                    self.spent[part] = self.spent.get(part, 0.0) + time.perf_counter() - start
                if then:
                    then()

        setattr(owner, name, timed)

    def start_counting(self) -> None:
        self.counting = True


def profile_edgegen(model, prompts: list[list[int]], options: dict, clock: Clock, max_new_tokens: int) -> dict:
    """Per-step microseconds of each part over the decode steps (the prefill forward excluded)."""
    clock.spent.clear()
    steps = wall = 0.0
    for ids in prompts:
        model.engine.rewind(0)
        clock.counting = False  # the generation's first forward (the prefill) switches it on
        result = model.stream(ids, max_new_tokens=max_new_tokens, **options).run()
        steps += len(result.stats.step_ms)
        wall += sum(result.stats.step_ms) / 1000
    return {"steps": int(steps), "step_us": wall / steps * 1e6,
            "parts_us": {part: clock.spent.get(part, 0.0) / steps * 1e6 for part in PARTS}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported model directory (default: the bundled model)")
    parser.add_argument("--genai-model", type=Path, required=True, help="genai's build of the same weights")
    parser.add_argument("--prompts", type=Path, default=HERE / "data" / "heldout_prompts.jsonl")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "step_profile.json")
    args = parser.parse_args()

    model = edgegen.load(args.model, provider="cpu", threads=args.threads)
    prompts = [model.encode_prompt(p, chat=True) for p in read_prompts(args.prompts)]
    genai = GenaiRunner(args.genai_model, args.threads)
    curve = model.cost_curve  # measured (or read) before the clocks go in
    clock = Clock()
    for part, target in PARTS.items():
        if target:
            clock.wrap(*target, part, then=clock.start_counting if target[1] == "forward" else None)
    clock.wrap(model.engine.session, "run_with_iobinding", "onnxruntime run")

    configs = {"edgegen ar": {"mode": "ar"}, "edgegen verify (default)": {}}
    results = {name: [] for name in configs}
    genai_steps = []
    for _ in range(args.rounds):
        for name, options in configs.items():
            results[name].append(profile_edgegen(model, prompts, options, clock, args.max_new_tokens))
        row = Row("genai")
        for ids in prompts:
            genai.run(ids, args.max_new_tokens, row)
        genai_steps.append(row.decode_ms / row.decode_tokens * 1000)

    summary = {}
    for name, runs in results.items():
        best = min(runs, key=lambda r: r["step_us"])  # the quietest round: least disturbed by the machine
        parts = {part: round(us, 1) for part, us in best["parts_us"].items() if us > 0}
        timed = parts.get("engine.forward (run + binding)", 0) + sum(
            us for part, us in parts.items() if part not in ("onnxruntime run", "engine.forward (run + binding)",
                                                            "  of which detokenize"))
        parts["rest of the loop"] = round(best["step_us"] - timed, 1)
        summary[name] = {"step_us": round(best["step_us"], 1), "steps": best["steps"], "parts_us": parts}
    summary["onnxruntime-genai ar"] = {"step_us": round(min(genai_steps), 1)}
    print("| part | " + " | ".join(summary) + " |")
    print("|---|" + "---|" * len(summary))
    for part in list(PARTS) + ["rest of the loop"]:
        cells = [f"{s['parts_us'].get(part, 0):.1f}" if "parts_us" in s else "" for s in summary.values()]
        print(f"| {part} | " + " | ".join(cells) + " |")
    print("| **whole step, µs** | " + " | ".join(f"**{s['step_us']:.1f}**" for s in summary.values()) + " |")
    save_json(args.out, {"model": str(args.model or "bundled"), "genai_model": str(args.genai_model),
                         "prompts": str(args.prompts), "max_new_tokens": args.max_new_tokens,
                         "rounds": args.rounds, "threads": args.threads, "results": summary,
                         "cost_curve": {"sizes": curve.sizes, "seconds": curve.seconds}})


if __name__ == "__main__":
    main()
