"""Retrieval recall@1 and @5 of latent, lexical and hybrid search on the three held-out splits of the multi-domain
knowledge base (examples/latent_memory/make_kb_splits.py), and on the held-out people of make_kb.py.

Each held-out split's facts go into a store of their own, indexed by the compressor (default: the bundled one);
each of the split's questions is searched three ways (runtime/retrieval.py), and counts as found at k when its
supporting fact is among the top k. The people row is the bundled compressor's own domain (it was trained on
make_kb.py's other people), with the store of benchmarks/latent_rag.py: the positives and hard negatives.

    python benchmarks/retrieval.py [--kb KB_DIR] [--compressor DIR]
(default: knowledge bases made now by make_kb_splits.py and make_kb.py with their defaults)
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import save_json

from edgegen.models import RAG_COMPRESSOR
from edgegen.runtime.compressor import Compressor
from edgegen.runtime.latent_store import LatentStore
from edgegen.runtime.rag import index_evidence
from edgegen.runtime.retrieval import FUSION_DEPTH, LATENT_WEIGHT, search

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples" / "latent_memory"))
import make_kb  # noqa: E402  (example scripts, not a package)
import make_kb_splits  # noqa: E402

HELDOUT_SPLITS = ("heldout_entities", "heldout_templates", "heldout_types")
MODES = ("latent", "lexical", "hybrid")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def split_rows(kb: Path | None) -> dict[str, tuple[list[dict], list[dict]]]:
    """{split: (evidence, questions)}, read from a make_kb_splits.py directory or made now."""
    if kb is None:
        rows, _ = make_kb_splits.build(2000, 200, make_kb_splits.HELDOUT_TYPES, seed=0)
        return {split: rows[split] for split in HELDOUT_SPLITS}
    return {split: (read_jsonl(kb / f"evidence_{split}.jsonl"), read_jsonl(kb / f"questions_{split}.jsonl"))
            for split in HELDOUT_SPLITS}


def people_rows(tmp: Path) -> tuple[list[dict], list[dict]]:
    """make_kb.py's held-out people (its defaults): their questions, and their positives and hard negatives."""
    with contextlib.redirect_stdout(sys.stderr):
        make_kb.main(tmp, 2000, 0.1, 0)
    questions = read_jsonl(tmp / "questions_heldout.jsonl")
    wanted = {i for q in questions for i in q["positive_ids"] + q["hard_negative_ids"]}
    return [row for row in read_jsonl(tmp / "evidence.jsonl") if row["id"] in wanted], questions


def recall(store: LatentStore, compressor: Compressor, questions: list[dict]) -> dict[str, dict[str, float]]:
    """{mode: {"recall_at_1", "recall_at_5"}} over the questions."""
    found = {mode: [0, 0] for mode in MODES}
    for question in questions:
        for mode in MODES:
            ranked = [hit.record.id for hit in search(question["question"], store, compressor, 5, mode)]
            found[mode][0] += ranked[:1] == question["positive_ids"][:1]
            found[mode][1] += bool(set(ranked) & set(question["positive_ids"]))
    return {mode: {"recall_at_1": top1 / len(questions), "recall_at_5": top5 / len(questions)}
            for mode, (top1, top5) in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, help="make_kb_splits.py output (default: made now, seed 0)")
    parser.add_argument("--compressor", type=Path, default=RAG_COMPRESSOR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "retrieval.json")
    args = parser.parse_args()

    compressor = Compressor(args.compressor, provider="cpu", threads=args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        splits = {**split_rows(args.kb), "people (make_kb.py)": people_rows(Path(tmp))}
    for split, (evidence, questions) in splits.items():
        with tempfile.TemporaryDirectory() as tmp:
            with LatentStore.for_compressor(Path(tmp) / "store", compressor) as store:
                index_evidence(store, [{"id": row["id"], "text": row["text"]} for row in evidence], compressor)
            results[split] = {"facts": len(evidence), "questions": len(questions),
                              **recall(LatentStore.open(Path(tmp) / "store"), compressor, questions)}
        print(f"{split}: done", file=sys.stderr)
    machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
               "seconds": round(time.perf_counter() - started, 1)}
    print("| split | facts | questions | " + " | ".join(f"{mode} R@1 / R@5" for mode in MODES) + " |")
    print("|---|---|---|" + "---|" * len(MODES))
    for split, row in results.items():
        cells = " | ".join(f"{row[mode]['recall_at_1']:.3f} / {row[mode]['recall_at_5']:.3f}" for mode in MODES)
        print(f"| {split} | {row['facts']} | {row['questions']} | {cells} |")
    print(f"{machine['cpus']} CPUs, load average {load_before[0]:.2f} before, {machine['load_average_after'][0]:.2f} "
          f"after; {machine['seconds']} s", file=sys.stderr)
    save_json(args.out, {"splits": results, "latent_weight": LATENT_WEIGHT, "fusion_depth": FUSION_DEPTH, "k": 5,
                         "kb": str(args.kb or "make_kb_splits.py defaults (seed 0)"),
                         "compressor": str(args.compressor), "machine": machine})


if __name__ == "__main__":
    main()
