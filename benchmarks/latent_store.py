"""Latent store at scale: add throughput, open time, exact search latency and memory, 1k to 1M items.

    python benchmarks/latent_store.py                  # sizes 1k 10k 100k 1M, synthetic vectors

Vectors are synthetic (the store's cost does not depend on their values): 512-d retrieval vectors as
in the reference, and 896-d latents, the hidden size of a Qwen2.5-0.5B generator. Each size runs in
its own process so that peak memory is its own. Prints a table and writes JSON.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgegen.runtime.memory import LatentStore, Record

RETRIEVAL, LATENT, BATCH = 512, 896, 10_000


def measure(size: int, directory: Path) -> dict:
    rng = np.random.default_rng(0)
    retrieval = rng.standard_normal((BATCH, RETRIEVAL)).astype(np.float32)
    latents = rng.standard_normal((BATCH, LATENT)).astype(np.float32)
    started = time.perf_counter()
    with LatentStore.open(directory, writable=True, retrieval_dim=RETRIEVAL, latent_dim=LATENT,
                          compressor={"name": "synthetic"}) as store:
        for start in range(0, size, BATCH):
            count = min(BATCH, size - start)
            store.append([Record(id=f"item-{i}", source="synthetic") for i in range(start, start + count)],
                         retrieval[:count], latents[:count])
    add_seconds = time.perf_counter() - started
    started = time.perf_counter()
    store = LatentStore.open(directory)
    open_seconds = time.perf_counter() - started
    queries = rng.standard_normal((21, RETRIEVAL))
    latencies = []
    for query in queries:
        started = time.perf_counter()
        store.search(query, k=5)
        latencies.append(time.perf_counter() - started)
    return {"items": size, "add_items_per_s": size / add_seconds, "open_s": open_seconds,
            "search_ms_p50": statistics.median(latencies[1:]) * 1000, "search_ms_max": max(latencies[1:]) * 1000,
            "disk_mb": store.stats()["bytes"] / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latent_store.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as directory:
            print(json.dumps(measure(args.one, Path(directory) / "store")))
        return
    rows = []
    for size in args.sizes:
        run = subprocess.run([sys.executable, __file__, "--one", str(size)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(run.stdout))
        print(f"measured {size} items", file=sys.stderr)
    print(f"{'items':>9}{'add items/s':>13}{'open s':>8}{'search p50 ms':>15}{'disk MB':>9}{'peak RSS MB':>13}")
    for r in rows:
        print(f"{r['items']:>9}{r['add_items_per_s']:>13.0f}{r['open_s']:>8.2f}{r['search_ms_p50']:>15.1f}"
              f"{r['disk_mb']:>9.0f}{r['peak_rss_mb']:>13.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"retrieval_dim": RETRIEVAL, "latent_dim": LATENT, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
