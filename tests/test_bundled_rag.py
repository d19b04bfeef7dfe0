"""The bundled latent-RAG pair on facts it never saw: retrieval works, and `edgegen rag` runs with no paths."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgegen import Compressor, LatentStore, index_evidence, load, rag
from edgegen.models import RAG_COMPRESSOR, RAG_GENERATOR

ROOT = Path(__file__).resolve().parent.parent
MAKE_KB = ROOT / "examples" / "latent_memory" / "make_kb.py"


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    """A fresh knowledge base with another seed: invented people the pair was not trained on."""
    root = tmp_path_factory.mktemp("kb")
    subprocess.run([sys.executable, str(MAKE_KB), str(root), "--people", "100", "--seed", "7"], check=True,
                   capture_output=True)
    return root


@pytest.fixture(scope="module")
def store(kb, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "s"
    compressor = Compressor(RAG_COMPRESSOR, provider="cpu")
    rows = [json.loads(line) for line in (kb / "evidence_heldout.jsonl").open()]
    with LatentStore.for_compressor(path, compressor) as writer:
        index_evidence(writer, [{"id": r["id"], "text": r["text"]} for r in rows], compressor, keep_text=True)
    return path


def test_retrieval_finds_unseen_facts(kb, store):
    compressor = Compressor(RAG_COMPRESSOR, provider="cpu")
    reader = LatentStore.open(store)
    questions = [json.loads(line) for line in (kb / "questions_heldout.jsonl").open()]
    found = sum(bool({h.record.id for h in reader.search(compressor.embed_query(q["question"]), 5)}
                     & set(q["positive_ids"])) for q in questions)
    assert found / len(questions) >= 0.5  # 5 facts per person, 10 people: chance is 0.1


def test_rag_answers_with_one_position_per_fact(kb, store):
    question = json.loads((kb / "questions_heldout.jsonl").open().readline())["question"]
    generator, compressor = load(RAG_GENERATOR, provider="cpu"), Compressor(RAG_COMPRESSOR, provider="cpu")
    latent = rag(question, store, generator, compressor, k=5)
    text = rag(question, store, generator, compressor, k=5, as_text=True)
    assert latent.context_tokens < text.context_tokens
    assert [h.record.id for h in latent.hits] == [h.record.id for h in text.hits]
    assert latent.result.stop_reason in ("eos", "max_new_tokens")


def test_rag_command_needs_no_model_paths(kb, store):
    question = json.loads((kb / "questions_heldout.jsonl").open().readline())["question"]
    run = subprocess.run([sys.executable, "-m", "edgegen", "rag", "ask", str(store), question, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    tokenizer = load(RAG_GENERATOR, provider="cpu").tokenizer
    labels = [("\n" if i > 1 else "") + f"Latent context {i}: " for i in range(1, 6)]
    one_position_each = sum(len(tokenizer.encode(label, add_special_tokens=False)) + 1 for label in labels)
    assert len(answer["sources"]) == 5 and answer["context_tokens"] == one_position_each


def test_latent_rag_benchmark_runs_its_no_context_baseline_without_retrieval(kb, tmp_path):
    """benchmarks/latent_rag.py on a few questions of the people and of each make_kb_splits.py split: the no-context
    baseline is the rag prompt with its context left empty (rag() itself refuses k = 0)."""
    splits = tmp_path / "splits"
    subprocess.run([sys.executable, str(MAKE_KB.with_name("make_kb_splits.py")), str(splits), "--train", "10",
                    "--heldout", "6"], check=True, capture_output=True)
    out = tmp_path / "latent_rag.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "latent_rag.py"), "--kb", str(kb), "--splits",
                          str(splits), "--limit", "2", "--retrieval", "lexical", "--threads", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["retrieval"] == "lexical" and list(result["sets"]) == [
        "people (make_kb.py)", "heldout_entities", "heldout_templates", "heldout_types"]
    tokenizer = load(RAG_GENERATOR, provider="cpu").tokenizer
    labels = sum(len(tokenizer.encode(("\n" if i > 1 else "") + f"Latent context {i}: ", add_special_tokens=False))
                 for i in range(1, 6))
    for name, split in result["sets"].items():
        assert split["questions"] == 2, name
        rows = {row["context"]: row for row in split["answers"]}
        latent, text, none = rows["5 latents"], rows["5 raw texts"], rows["no context"]
        assert none["context_tokens_mean"] == 0 and latent["context_tokens_mean"] == labels + 5
        assert none["prompt_tokens_mean"] == latent["prompt_tokens_mean"] - latent["context_tokens_mean"]
        assert text["context_tokens_per_item"] > latent["context_tokens_per_item"]
        assert all(0 <= row["exact_match"] <= 1 for row in rows.values())
