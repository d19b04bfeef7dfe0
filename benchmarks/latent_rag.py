"""Latent-RAG on held-out facts: retrieval recall, answer exact match and generator prompt tokens.

The store holds every held-out evidence item (people never trained on); each held-out question is
answered three ways by the same generator: over its top-k latents, over the same top-k evidence as
raw text (the baseline), and with no context at all. Two more rows give the generator the right
fact alone, as its latent and as text: how well it reads, apart from retrieval.

    python benchmarks/latent_rag.py --kb KB_DIR [--generator DIR --compressor DIR] [--k 5]
(default: the bundled latent-RAG generator and compressor)
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import save_json

from edgegen import load
from edgegen.models import RAG_COMPRESSOR, RAG_GENERATOR
from edgegen.runtime.compressor import Compressor
from edgegen.runtime.engine import Latent
from edgegen.runtime.latent_store import LatentStore
from edgegen.runtime.rag import build_prompt, index_evidence, rag

HERE = Path(__file__).resolve().parent


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def normalize(text: str) -> str:
    return " ".join(text.lower().strip(" .\n").split())


def answer_over(generator, compressor, question: str, contexts: list) -> str:
    items, _ = build_prompt(generator.tokenizer, compressor.manifest.layout, question, contexts)
    return generator.stream(items, max_new_tokens=32, mode="verify").run().text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, required=True, help="examples/latent_memory/make_kb.py output")
    parser.add_argument("--generator", type=Path, default=RAG_GENERATOR)
    parser.add_argument("--compressor", type=Path, default=RAG_COMPRESSOR)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=int, help="first N held-out questions only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latent_rag.json")
    args = parser.parse_args()

    questions = read_jsonl(args.kb / "questions_heldout.jsonl")[:args.limit]
    wanted = {i for q in questions for i in q["positive_ids"] + q["hard_negative_ids"]}
    evidence = [row for row in read_jsonl(args.kb / "evidence.jsonl") if row["id"] in wanted]
    generator = load(args.generator, provider="cpu", threads=args.threads)
    compressor = Compressor(args.compressor, provider="cpu", threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with LatentStore.for_compressor(Path(tmp) / "store", compressor) as store:
            index_evidence(store, [{"id": row["id"], "text": row["text"]} for row in evidence], compressor,
                           keep_text=True)
        index_s = time.perf_counter() - started
        store = LatentStore.open(Path(tmp) / "store")
        top1 = top_k = 0
        correct = {"latent": 0, "text": 0, "none": 0, "right latent": 0, "right text": 0}
        tokens = {"latent": [], "text": [], "none": []}
        context_tokens = {"latent": [], "text": [], "none": []}
        for n, q in enumerate(questions, 1):
            for name, options in (("latent", {}), ("text", {"as_text": True}), ("none", {"k": 0})):
                answer = rag(q["question"], store, generator, compressor, mode="verify", **{"k": args.k, **options})
                correct[name] += normalize(answer.text) == normalize(q["answer"])
                tokens[name].append(answer.prompt_tokens)
                context_tokens[name].append(answer.context_tokens)
                if name == "latent":
                    ranked = [hit.record.id for hit in answer.hits]
                    top1 += ranked[0] in q["positive_ids"]
                    top_k += bool(set(ranked) & set(q["positive_ids"]))
            right = q["positive_ids"][0]
            for name, context in (("right latent", Latent(store.latent(store.row_of[right]))),
                                  ("right text", store.records[store.row_of[right]].text)):
                answer = answer_over(generator, compressor, q["question"], [context])
                correct[name] += normalize(answer) == normalize(q["answer"])
            if n % 50 == 0 or n == len(questions):
                print(f"\r{n}/{len(questions)} questions", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    total = len(questions)
    rows = [{"context": {"latent": f"{args.k} latents", "text": f"{args.k} raw texts", "none": "no context"}[name],
             "exact_match": correct[name] / total, "prompt_tokens_mean": statistics.mean(tokens[name]),
             "context_tokens_mean": statistics.mean(context_tokens[name])}
            for name in ("latent", "text", "none")]
    rows += [{"context": f"the right fact alone, as {name.split()[1]}", "exact_match": correct[name] / total}
             for name in ("right latent", "right text")]
    print(f"held-out: {total} questions over {len(evidence)} evidence items (indexed in {index_s:.1f} s)")
    print(f"retrieval recall@1 {top1 / total:.3f}, recall@{args.k} {top_k / total:.3f}")
    print("| context | exact match | generator prompt tokens (mean) | of which context |\n|---|---|---|---|")
    for row in rows:
        tokens = f"{row['prompt_tokens_mean']:.1f} | {row['context_tokens_mean']:.1f}" if "prompt_tokens_mean" in row \
            else " | "
        print(f"| {row['context']} | {row['exact_match']:.3f} | {tokens} |")
    save_json(args.out, {"questions": total, "evidence_items": len(evidence), "k": args.k,
                         "recall_at_1": top1 / total, f"recall_at_{args.k}": top_k / total,
                         "answers": rows, "generator": str(args.generator), "compressor": str(args.compressor)})


if __name__ == "__main__":
    main()
