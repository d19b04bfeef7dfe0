"""The bundled latent-RAG pair on facts it never saw: retrieval works, and `edgegen rag` runs with no paths."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgegen import Compressor, LatentStore, index_evidence, load, rag
from edgegen.models import RAG_COMPRESSOR, RAG_GENERATOR

MAKE_KB = Path(__file__).resolve().parent.parent / "examples" / "latent_memory" / "make_kb.py"


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
