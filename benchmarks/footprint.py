"""What a model costs a device before it decodes: file size, load time, peak RSS and time from process start to
the first token, each in a fresh process, edgegen beside onnxruntime-genai on the same checkpoint.

    python benchmarks/footprint.py --model fp32=EG_FP32 --model int4=EG_INT4 \
        --genai fp32=GENAI_FP32 --genai int4=GENAI_INT4 [--runs 3] [--prompt-tokens 128]

Runs alternate between the two runtimes; the table shows each one's median, and the JSON every run.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import HERE, save_json

# the child: load, prefill a prompt of N ids, produce one token; prints its timings (seconds since the
# interpreter started) and its peak resident memory; `__START__` is replaced by the parent's clock at spawn
CHILD = {
    "edgegen": """
import sys, time
start = __START__
import edgegen
model = edgegen.load(sys.argv[1], provider="cpu", threads=2, max_context=1024)
loaded = time.time()
ids = list(range(10, 10 + int(sys.argv[2])))
next(iter(model.stream(ids, mode="ar", max_new_tokens=1)), None)
""",
    "genai": """
import sys, time
start = __START__
import onnxruntime_genai as og
model = og.Model(sys.argv[1])
loaded = time.time()
params = og.GeneratorParams(model)
params.set_search_options(max_length=int(sys.argv[2]) + 1, do_sample=False)
generator = og.Generator(model, params)
generator.append_tokens(list(range(10, 10 + int(sys.argv[2]))))
generator.generate_next_token()
""",
}
REPORT = """
first = time.time()
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(f"{loaded - start} {first - start} {peak * 1024}")
"""


def measure(runtime: str, model: Path, prompt_tokens: int) -> dict:
    started = time.time()
    code = CHILD[runtime].replace("__START__", repr(started)) + REPORT
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-c", code, str(model), str(prompt_tokens)], capture_output=True,
                         text=True, env=env, timeout=600)
    if run.returncode:
        raise SystemExit(f"{runtime} failed on {model}: {run.stderr[-2000:]}")
    load_s, first_s, peak = run.stdout.split()[-3:]
    return {"load_s": float(load_s), "first_token_s": float(first_s), "peak_rss_bytes": int(peak)}


def graph_bytes(model: Path) -> int:
    return sum(f.stat().st_size for f in model.iterdir() if f.name.endswith((".onnx", ".onnx.data", ".engine")))


def pairs(values: list[str]) -> dict[str, Path]:
    return {label: Path(path) for label, _, path in (value.partition("=") for value in values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[], help="LABEL=edgegen model directory")
    parser.add_argument("--genai", action="append", default=[], help="LABEL=onnxruntime-genai model directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "footprint.json")
    args = parser.parse_args()
    sides = {"edgegen": pairs(args.model), "genai": pairs(args.genai)}
    runs = {(runtime, label): [] for runtime, models in sides.items() for label in models}
    for _ in range(args.runs):  # alternating, so that load on the machine falls on both sides alike
        for label in dict.fromkeys([*sides["edgegen"], *sides["genai"]]):
            for runtime, models in sides.items():
                if label in models:
                    runs[runtime, label].append(measure(runtime, models[label], args.prompt_tokens))
    rows = []
    for (runtime, label), measured in runs.items():
        median = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
        rows.append({"runtime": runtime, "model": label, "graph_mb": graph_bytes(sides[runtime][label]) / 1e6,
                     "load_s": median["load_s"], "first_token_s": median["first_token_s"],
                     "peak_rss_gb": median["peak_rss_bytes"] / 1e9, "runs": measured})
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores, {args.prompt_tokens}-token prompt, "
          "2 threads, medians of", args.runs)
    print("| model | runtime | graph on disk MB | load s | process start to first token s | peak RSS GB |")
    print("|---|---|---:|---:|---:|---:|")
    for row in sorted(rows, key=lambda r: (r["model"], r["runtime"])):
        print(f"| {row['model']} | {row['runtime']} | {row['graph_mb']:.0f} | {row['load_s']:.2f} | "
              f"{row['first_token_s']:.2f} | {row['peak_rss_gb']:.2f} |")
    save_json(args.out, {"prompt_tokens": args.prompt_tokens, "runs": args.runs, "rows": rows,
                         "load_average": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
