"""`edgegen serve` under load: concurrent clients, every answer checked against the same request run alone.

Starts the server on a free local port (the bundled model unless --model), sends each client's requests
through the official openai client, and compares every answer with the model's own in-process answer
to the same request. Prints a table and writes JSON.

    python benchmarks/serve_load.py [--model MODEL] [--clients 8] [--requests 20]
"""
import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import openai

import edgegen
from edgegen.bench import BUILTIN_PROMPTS
from edgegen.serve import spawn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HERE, save_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve_load.json")
    args = parser.parse_args()
    model = edgegen.load(args.model)
    prompts = [[{"role": "user", "content": p}] for p in BUILTIN_PROMPTS]
    expected = [model.generate(p, max_new_tokens=args.max_tokens).text for p in prompts]
    process, url = spawn(*([args.model] if args.model else []), "--max-queue", str(args.clients))
    latencies, wrong, failures = [], [], []

    def client_loop(number: int) -> None:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        for i in range(args.requests):
            which = (number + i) % len(prompts)
            started = time.perf_counter()
            try:
                reply = client.chat.completions.create(model="m", messages=prompts[which], max_tokens=args.max_tokens)
            except openai.APIError as e:
                failures.append(str(e))
                continue
            latencies.append(time.perf_counter() - started)
            if reply.choices[0].message.content != expected[which]:
                wrong.append(which)

    started = time.perf_counter()
    try:
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=10)
    wall = time.perf_counter() - started
    latencies.sort()
    row = {"clients": args.clients, "requests": args.clients * args.requests, "answered": len(latencies),
           "wrong": len(wrong), "failed": len(failures), "latency_ms_p50": statistics.median(latencies) * 1000,
           "latency_ms_p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
           "requests_per_s": len(latencies) / wall, "load_average": os.getloadavg()[0], "cores": os.cpu_count()}
    print("| clients | requests | answered | wrong | failed | p50 ms | p99 ms | requests/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {row['clients']} | {row['requests']} | {row['answered']} | {row['wrong']} | {row['failed']} | "
          f"{row['latency_ms_p50']:.0f} | {row['latency_ms_p99']:.0f} | {row['requests_per_s']:.1f} |")
    print(f"load average {row['load_average']:.2f} on {row['cores']} cores; failures: {failures[:3]}")
    save_json(args.out, row)
    return 1 if wrong or failures else 0


if __name__ == "__main__":
    sys.exit(main())
