"""Latent-RAG on held-out facts: retrieval recall, answer exact match and generator prompt tokens.

Each held-out set of questions is answered five ways by the same generator: over its top-k latents (found by
--retrieval, hybrid by default as in `edgegen rag ask`), over the same top-k evidence as raw text (the
baseline), with no context at all (the rag prompt with its context left empty: no retrieval), and given the
right fact alone, as its latent and as its text (how well the generator reads, apart from retrieval).

Held-out sets:
    --kb DIR      make_kb.py's held-out people (the bundled pair's own world). The store holds the positives and
                  hard negatives of all held-out questions (3975 facts with make_kb.py's defaults).
    --splits DIR  make_kb_splits.py's heldout_entities, heldout_templates and heldout_types; each split's store
                  holds all of that split's facts (as in benchmarks/retrieval.py).
The store is always built from the whole held-out set, so sampling questions (--sample, --limit) does not make
retrieval easier.

    python benchmarks/latent_rag.py --kb KB_DIR [--splits SPLITS_DIR] [--retrieval hybrid|latent|lexical]
        [--k 5] [--sample N [--seed 0] | --limit N] [--generator DIR --compressor DIR]
(default: the bundled latent-RAG generator and compressor)
"""
import argparse
import json
import os
import random
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
from edgegen.runtime.rag import RAG_MAX_NEW_TOKENS, build_prompt, index_evidence, rag
from edgegen.runtime.retrieval import RETRIEVAL_MODES

HERE = Path(__file__).resolve().parent
SPLITS = ("heldout_entities", "heldout_templates", "heldout_types")
PEOPLE = "people (make_kb.py)"
WAYS = ("latent", "text", "none", "right latent", "right text")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def normalize(text: str) -> str:
    return " ".join(text.lower().strip(" .\n").split())


def answer_over(generator, compressor, question: str, contexts: list) -> tuple[str, int, int]:
    """The generator's answer over these contexts (latents or texts; none: the question alone), in the prompt
    rag() builds, decoded as rag() decodes; with the prompt's length and its context part."""
    items, context = build_prompt(generator.tokenizer, compressor.manifest.layout, question, contexts)
    result = generator.stream(items, max_new_tokens=RAG_MAX_NEW_TOKENS, mode="verify").run()
    return result.text.strip(), len(items), context


def people_set(kb: Path) -> tuple[list[dict], list[dict]]:
    """make_kb.py's held-out questions, and the facts of the store: their positives and hard negatives."""
    questions = read_jsonl(kb / "questions_heldout.jsonl")
    wanted = {i for q in questions for i in q["positive_ids"] + q["hard_negative_ids"]}
    return [row for row in read_jsonl(kb / "evidence.jsonl") if row["id"] in wanted], questions


def chosen(questions: list[dict], sample: int | None, limit: int | None, seed: int) -> list[dict]:
    if sample is not None and sample < len(questions):
        return [questions[i] for i in sorted(random.Random(seed).sample(range(len(questions)), sample))]
    return questions[:limit]


def evaluate(evidence: list[dict], questions: list[dict], generator, compressor, k: int, retrieval: str,
             label: str) -> dict:
    """Recall and the five ways' exact match over the questions, with a store of `evidence`."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with LatentStore.for_compressor(Path(tmp) / "store", compressor) as store:
            index_evidence(store, [{"id": row["id"], "text": row["text"]} for row in evidence], compressor,
                           keep_text=True)
        index_s = time.perf_counter() - started
        store = LatentStore.open(Path(tmp) / "store")
        top1 = top_k = 0
        correct = dict.fromkeys(WAYS, 0)
        by_kind = {}  # {attribute (make_kb.py) or type/attribute (splits): {way: answers right, "questions": n}}
        tokens = {way: [] for way in ("latent", "text", "none")}
        context_tokens = {way: [] for way in ("latent", "text", "none")}
        started = time.perf_counter()
        for n, q in enumerate(questions, 1):
            right = {}  # {way: whether its answer matched}
            for way, as_text in (("latent", False), ("text", True)):
                answer = rag(q["question"], store, generator, compressor, k=k, as_text=as_text,
                             retrieval=retrieval, mode="verify")
                right[way] = normalize(answer.text) == normalize(q["answer"])
                tokens[way].append(answer.prompt_tokens)
                context_tokens[way].append(answer.context_tokens)
                if way == "latent":
                    ranked = [hit.record.id for hit in answer.hits]
                    top1 += ranked[:1] == q["positive_ids"][:1]
                    top_k += bool(set(ranked) & set(q["positive_ids"]))
            text, prompt, context = answer_over(generator, compressor, q["question"], [])
            right["none"] = normalize(text) == normalize(q["answer"])
            tokens["none"].append(prompt)
            context_tokens["none"].append(context)
            row = store.row_of[q["positive_ids"][0]]
            for way, context in (("right latent", Latent(store.latent(row))), ("right text", store.records[row].text)):
                text, _, _ = answer_over(generator, compressor, q["question"], [context])
                right[way] = normalize(text) == normalize(q["answer"])
            kind = f"{q['type']}/{q['attribute']}" if "type" in q else q["positive_ids"][0].rsplit("/", 1)[1]
            counts = by_kind.setdefault(kind, {"questions": 0, **dict.fromkeys(WAYS, 0)})
            counts["questions"] += 1
            for way in WAYS:
                correct[way] += right[way]
                counts[way] += right[way]
            if n % 25 == 0 or n == len(questions):
                print(f"\r{label}: {n}/{len(questions)} questions", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        answer_s = time.perf_counter() - started
    total = len(questions)
    names = {"latent": f"{k} latents", "text": f"{k} raw texts", "none": "no context",
             "right latent": "the right fact alone, as latent", "right text": "the right fact alone, as text"}
    rows = []
    for way in WAYS:
        row = {"context": names[way], "exact_match": correct[way] / total}
        if way in tokens:
            row["prompt_tokens_mean"] = statistics.mean(tokens[way])
            row["context_tokens_mean"] = statistics.mean(context_tokens[way])
            if way != "none":
                row["context_tokens_per_item"] = statistics.mean(c / k for c in context_tokens[way])
        rows.append(row)
    return {"questions": total, "evidence_items": len(evidence), "recall_at_1": top1 / total,
            f"recall_at_{k}": top_k / total, "answers": rows, "index_seconds": round(index_s, 1),
            "answer_seconds": round(answer_s, 1),
            "exact_match_by_kind": {kind: {"questions": counts["questions"],
                                           **{names[way]: counts[way] / counts["questions"] for way in WAYS}}
                                    for kind, counts in sorted(by_kind.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, help="examples/latent_memory/make_kb.py output: its held-out people")
    parser.add_argument("--splits", type=Path,
                        help="examples/latent_memory/make_kb_splits.py output: its three held-out splits")
    parser.add_argument("--generator", type=Path, default=RAG_GENERATOR)
    parser.add_argument("--compressor", type=Path, default=RAG_COMPRESSOR)
    parser.add_argument("--retrieval", choices=RETRIEVAL_MODES, default="hybrid",
                        help="how the top k are found (default hybrid, as `edgegen rag ask`)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--limit", type=int, help="the first N questions of each set only")
    parser.add_argument("--sample", type=int, help="N questions of each set drawn at random (--seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latent_rag.json")
    args = parser.parse_args()
    if args.kb is None and args.splits is None:
        parser.error("give --kb (make_kb.py output), --splits (make_kb_splits.py output), or both")
    if args.k < 1:
        parser.error("--k must be >= 1")

    sets = {}
    if args.kb is not None:
        sets[PEOPLE] = people_set(args.kb)
    if args.splits is not None:
        sets.update({split: (read_jsonl(args.splits / f"evidence_{split}.jsonl"),
                             read_jsonl(args.splits / f"questions_{split}.jsonl")) for split in SPLITS})
    generator = load(args.generator, provider="cpu", threads=args.threads)
    compressor = Compressor(args.compressor, provider="cpu", threads=args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    results = {}
    for name, (evidence, questions) in sets.items():
        picked = chosen(questions, args.sample, args.limit, args.seed)
        results[name] = {"questions_in_set": len(questions),
                         **evaluate(evidence, picked, generator, compressor, args.k, args.retrieval, name)}
    machine = {"cpus": os.cpu_count(), "threads": args.threads, "load_average_before": load_before,
               "load_average_after": os.getloadavg(), "seconds": round(time.perf_counter() - started, 1)}

    print(f"retrieval: {args.retrieval}, k = {args.k}")
    print(f"| set | questions (of) | facts in store | recall@1 / @{args.k} | " +
          " | ".join(row["context"] for row in next(iter(results.values()))["answers"]) +
          " | context tokens per item, latent / text |")
    print("|---|---|---|---|" + "---|" * len(WAYS) + "---|")
    for name, result in results.items():
        answers = result["answers"]
        print(f"| {name} | {result['questions']} ({result['questions_in_set']}) | {result['evidence_items']} | "
              f"{result['recall_at_1']:.3f} / {result[f'recall_at_{args.k}']:.3f} | " +
              " | ".join(f"{row['exact_match']:.3f}" for row in answers) +
              f" | {answers[0]['context_tokens_per_item']:.1f} / {answers[1]['context_tokens_per_item']:.1f} |")
    print(f"{machine['cpus']} CPUs, load average {load_before[0]:.2f} before, {machine['load_average_after'][0]:.2f} "
          f"after; {machine['seconds']} s", file=sys.stderr)
    save_json(args.out, {"retrieval": args.retrieval, "k": args.k,
                         "questions": ("all" if args.sample is None and args.limit is None else
                                       f"{args.sample} drawn at random (seed {args.seed})" if args.sample is not None
                                       else f"the first {args.limit}"),
                         "sets": results, "kb": str(args.kb) if args.kb else None,
                         "splits": str(args.splits) if args.splits else None,
                         "generator": str(args.generator), "compressor": str(args.compressor), "machine": machine})


if __name__ == "__main__":
    main()
