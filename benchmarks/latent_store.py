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

from edgegen.runtime.latent_store import LatentStore, Record

RETRIEVAL, LATENT, BATCH = 512, 896, 10_000


def clustered(rng, rows: int, centers: np.ndarray) -> np.ndarray:
    """Embedding-like vectors: topics (cluster centres) plus item-specific noise."""
    return (centers[rng.integers(0, len(centers), rows)] + 0.5 * rng.standard_normal((rows, RETRIEVAL))).astype(
        np.float32)


def measure(size: int, directory: Path, with_ann: bool) -> dict:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((1000, RETRIEVAL)).astype(np.float32)
    latents = rng.standard_normal((BATCH, LATENT)).astype(np.float32)
    batches = [clustered(rng, min(BATCH, size - start), centers) for start in range(0, size, BATCH)]
    started = time.perf_counter()
    with LatentStore.open(directory, writable=True, retrieval_dim=RETRIEVAL, latent_dim=LATENT,
                          compressor={"name": "synthetic"}) as store:
        for number, retrieval in enumerate(batches):
            start = number * BATCH
            store.append([Record(id=f"item-{i}", source="synthetic") for i in range(start, start + len(retrieval))],
                         retrieval, latents[:len(retrieval)])
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
    row = {"items": size, "add_items_per_s": size / add_seconds, "open_s": open_seconds,
           "search_ms_p50": statistics.median(latencies[1:]) * 1000, "search_ms_max": max(latencies[1:]) * 1000,
           "disk_mb": store.stats()["bytes"] / 2**20,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return {**row, **measure_ann(directory, rng, centers)} if with_ann else row


def measure_ann(directory: Path, rng, centers: np.ndarray, k: int = 10) -> dict:
    """HNSW build time, search latency and recall@k against exact search, on queries near stored topics."""
    started = time.perf_counter()
    with LatentStore.open(directory, writable=True) as store:
        store.build_index()
    build_seconds = time.perf_counter() - started
    store = LatentStore.open(directory)
    queries = clustered(rng, 51, centers)
    latencies, found = [], 0
    for query in queries:
        started = time.perf_counter()
        hits = store.search(query, k)
        latencies.append(time.perf_counter() - started)
        found += len({h.row for h in hits} & {h.row for h in store.search(query, k, exact=True)})
    return {"ann_build_s": build_seconds, "ann_search_ms_p50": statistics.median(latencies[1:]) * 1000,
            f"ann_recall_at_{k}": found / (k * len(queries)),
            "ann_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "latent_store.json")
    parser.add_argument("--ann-from", type=int, default=100_000, help="also build and measure the HNSW index "
                                                                       "from this size (needs usearch)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as directory:
            print(json.dumps(measure(args.one, Path(directory) / "store", args.one >= args.ann_from)))
        return
    rows = []
    for size in args.sizes:
        run = subprocess.run([sys.executable, __file__, "--one", str(size), "--ann-from", str(args.ann_from)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(run.stdout))
        print(f"measured {size} items", file=sys.stderr)
    print(f"{'items':>9}{'add items/s':>13}{'open s':>8}{'search p50 ms':>15}{'disk MB':>9}{'peak RSS MB':>13}"
          f"{'HNSW build s':>14}{'HNSW p50 ms':>13}{'recall@10':>11}")
    for r in rows:
        ann = (f"{r['ann_build_s']:>14.1f}{r['ann_search_ms_p50']:>13.2f}{r['ann_recall_at_10']:>11.3f}"
               if "ann_build_s" in r else "")
        print(f"{r['items']:>9}{r['add_items_per_s']:>13.0f}{r['open_s']:>8.2f}{r['search_ms_p50']:>15.1f}"
              f"{r['disk_mb']:>9.0f}{r['peak_rss_mb']:>13.0f}{ann}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"retrieval_dim": RETRIEVAL, "latent_dim": LATENT, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
