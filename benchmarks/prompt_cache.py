"""Time to first token for a long system prompt, with and without the on-disk prompt cache, each in a fresh
process (the cache's point is the next process). Alternates the two, prints a table and writes JSON.

    python benchmarks/prompt_cache.py [--model MODEL] [--system-tokens 1000] [--repeat 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, save_json  # noqa: E402

ONE_RUN = """
import json, sys, time
import edgegen
model = edgegen.load(sys.argv[1] or None, prompt_cache=sys.argv[2] or None)
messages = [{"role": "system", "content": sys.argv[3]}, {"role": "user", "content": "Write 4821 in words."}]
stats = model.generate(messages, max_new_tokens=8).stats
print(json.dumps({"ttft_ms": stats.ttft_ms, "prompt": stats.prompt_tokens, "cached": stats.cached_prompt_tokens}))
"""


def run(model: str, cache: str, system: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, model, cache, system], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--system-tokens", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "prompt_cache.json")
    args = parser.parse_args()
    import edgegen

    tokenizer = edgegen.load(args.model).tokenizer
    words = "The assistant answers in words, briefly and exactly. ".split() * 400
    system = " ".join(words[:args.system_tokens])
    while len(tokenizer.encode(system)) > args.system_tokens:
        system = system.rsplit(" ", 1)[0]
    model = str(args.model or "")
    runs = {"no cache": [], "cache": []}
    with tempfile.TemporaryDirectory() as cache:
        run(model, cache, system)  # fills the cache
        for _ in range(args.repeat):
            runs["no cache"].append(run(model, "", system))
            runs["cache"].append(run(model, cache, system))
    rows = [{"run": name, "ttft_ms_p50": statistics.median(r["ttft_ms"] for r in results),
             "prompt_tokens": results[0]["prompt"], "cached_prompt_tokens": results[0]["cached"]}
            for name, results in runs.items()]
    print("| run | prompt tokens | from the cache | TTFT p50 ms |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['run']} | {row['prompt_tokens']} | {row['cached_prompt_tokens']} | {row['ttft_ms_p50']:.1f} |")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    save_json(args.out, {"model": model or "bundled", "rows": rows, "load_average": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
