"""Latent-RAG end to end on tiny random models: store.add, retrieval, the reference prompt layout."""
import json
import shutil

import numpy as np
import pytest
import torch
from test_memory_export import reference_state

from edgegen import EdgegenError
from edgegen.export.compressor_graph import export_memory
from edgegen.runtime.compressor import Compressor
from edgegen.runtime.engine import Latent
from edgegen.runtime.latent_store import LatentStore
from edgegen.runtime.rag import index_evidence, rag
from edgegen.runtime.retrieval import search

FACTS = [{"text": "Ada Lovelace was born in London in 1815.", "source": "facts.txt"},
         {"text": "The Rhine flows through Basel.", "source": "facts.txt"},
         {"text": "Python 3.11 was released in October 2022.", "source": "facts.txt"},
         {"text": "Mount Kenya is in Kenya.", "source": "facts.txt", "id": "kenya"}]


@pytest.fixture(scope="module")
def compressor(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("rag-compressor")
    shutil.copytree(checkpoints["qwen2_4x"], root / "src" / "base")
    torch.save(reference_state(hidden=64, layers=2), root / "src" / "checkpoint.pt")
    export_memory(root / "src", root / "out", trust_pickle=True)
    return Compressor(root / "out", provider="cpu")


@pytest.fixture
def store(compressor, tmp_path):
    with LatentStore.for_compressor(tmp_path / "store", compressor) as writer:
        index_evidence(writer, FACTS, compressor, keep_text=True, batch_size=3)
    return LatentStore.open(tmp_path / "store")


def test_add_is_resumable_and_checks_the_compressor(compressor, store, tmp_path):
    assert len(store) == 4 and "kenya" in store
    with LatentStore.open(tmp_path / "store", writable=True) as writer:
        assert index_evidence(writer, FACTS + [{"text": "new fact"}], compressor) == [writer.records[-1].id]
        writer.info = {**writer.info, "compressor": {"checksum": "other"}}
        with pytest.raises(EdgegenError, match="another compressor"):
            index_evidence(writer, [{"text": "x"}], compressor)


def test_prompt_has_one_latent_per_item_in_the_reference_layout(compressor, store, latent_model):
    question = "Where was Ada Lovelace born?"
    answer = rag(question, store, latent_model, compressor, k=3, mode="ar", max_new_tokens=8)
    expected_hits = search(question, store, compressor, 3)  # hybrid by default
    assert [h.record.id for h in answer.hits] == [h.record.id for h in expected_hits]
    items = latent_model.engine.tokens[:answer.prompt_tokens]  # the prompt as the engine cached it
    latents = [i for i, item in enumerate(items) if isinstance(item, Latent)]
    assert len(latents) == 3
    for latent_index, hit in zip(latents, answer.hits):
        np.testing.assert_array_equal(items[latent_index].vector, store.latent(hit.row))
    decode = latent_model.tokenizer.decode
    assert decode(items[latents[0] + 1:latents[1]]) == "\nLatent context 2: "
    assert decode(items[latents[-1] + 1:]).startswith("\nQuestion: Where was Ada Lovelace born?")
    again = latent_model.stream(items, mode="ar", max_new_tokens=8)
    assert "".join(again).strip() == answer.text  # rag strips the answer's surrounding whitespace


def test_answers_are_lossless_by_default(compressor, store, latent_model):
    """A MARS generator's stale mask predictions must not cut an answer short: the default is verify."""
    question = "Where does the Rhine flow?"
    default = rag(question, store, latent_model, compressor, k=3, max_new_tokens=12, mode=None)
    greedy = rag(question, store, latent_model, compressor, k=3, max_new_tokens=12, mode="ar")
    assert default.result.stats.mode == "verify" and default.result.token_ids == greedy.result.token_ids
    assert rag(question, store, latent_model, compressor, k=3, max_new_tokens=4, mode="threshold").result.stats.mode \
        == "threshold"  # an explicit mode still wins


def test_text_baseline_costs_more_generator_tokens(compressor, store, latent_model):
    latent = rag("Where does the Rhine flow?", store, latent_model, compressor, k=4, max_new_tokens=4)
    text = rag("Where does the Rhine flow?", store, latent_model, compressor, k=4, as_text=True, max_new_tokens=4)
    assert latent.context_tokens < text.context_tokens
    assert latent.prompt_tokens < text.prompt_tokens


def test_generator_must_match_the_compressor(compressor, store, exported):
    from edgegen import load

    with pytest.raises(EdgegenError, match="re-export it with `edgegen export --latent-inputs`"):
        rag("q", store, load(exported["mars"], provider="cpu"), compressor, k=2)


def edgegen_command(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_rag_commands(compressor, latent_model, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Ada Lovelace was born in London.\n\nThe Rhine flows through Basel.\n")
    (docs / "b.md").write_text(" ".join(f"Fact {i} is about Kenya." for i in range(40)) + " Fact 0 is about Kenya.")
    # a long paragraph, split into sentences; the repeated last one is stored once
    (docs / "latin1.txt").write_bytes(b"caf\xe9 au lait")  # skipped with a warning, as is a link out of the tree
    (tmp_path / "secret.txt").write_text("not to be indexed")
    (docs / "link.txt").symlink_to(tmp_path / "secret.txt")
    store = tmp_path / "store"
    index = edgegen_command("rag", "index", store, docs, "--compressor", compressor.path, "--keep-text")
    assert index.returncode == 0, index.stderr
    assert "42 added" in index.stderr
    assert "skipped " + str(docs / "latin1.txt") + " is not UTF-8 text (byte 3" in index.stderr
    assert "skipped " + str(docs / "link.txt") + ": it links outside" in index.stderr
    bad = edgegen_command("rag", "index", tmp_path / "other", docs / "latin1.txt", "--compressor", compressor.path)
    assert bad.returncode == 1 and "latin1.txt is not UTF-8 text" in bad.stderr  # named on its own: an error
    again = edgegen_command("rag", "index", store, docs / "a.txt", "--compressor", compressor.path)
    assert "0 added, 2 already there" in again.stderr
    ask = edgegen_command("rag", "ask", store, "Where was Ada born?", "--generator", latent_model.path, "--k", "2",
                          "--json", "--mode", "ar")
    assert ask.returncode == 0, ask.stderr
    answer = json.loads(ask.stdout)
    assert len(answer["sources"]) == 2 and answer["stop_reason"] in ("eos", "max_new_tokens")
    listing = edgegen_command("rag", "ls", store).stdout.splitlines()
    assert len(listing) == 42
    removed = edgegen_command("rag", "rm", store, listing[0].split("\t")[0], "no-such-id")
    assert "deleted 1 of 2" in removed.stderr
    assert json.loads(edgegen_command("rag", "stats", store).stdout)["items"] == 41


@pytest.mark.parametrize("item,message", [({"text": "x", "id": 5}, "has id 5"), ({"text": "x", "id": ["a"]}, "has id"),
                                          ({"text": "x", "id": "a\nb"}, "printable"), ({"text": "x", "id": "\ud800"},
                                                                                     "printable"),
                                          ({"id": "x"}, 'not a dict with a "text" string'), ("text", "not a dict")])
def test_bad_items_are_clear_errors_and_add_nothing(compressor, tmp_path, item, message):
    with LatentStore.for_compressor(tmp_path / "store", compressor) as store:
        with pytest.raises(EdgegenError, match=message):
            index_evidence(store, [{"text": "fine", "id": "0"}, item], compressor)
        assert len(store) == 0
        assert index_evidence(store, [{"text": "fine", "id": "0"}], compressor) == ["0"]  # "0" is an id like any other


def test_a_huge_paragraph_is_cut_before_it_is_tokenized(compressor):
    paragraph = "The Rhine flows through Basel. " * 200_000  # 6 MB
    limit = compressor.manifest.max_evidence_tokens
    assert (compressor._ids(paragraph) == compressor._ids(paragraph[:20_000])).all()
    assert compressor._ids(paragraph).shape == (1, limit)


def test_a_question_with_nul_bytes_or_surrogates_is_answered_not_a_traceback(compressor, store, latent_model):
    for question in ("Where was\x00 Ada born?", "Where \ud800 was Ada born?"):
        answer = rag(question, store, latent_model, compressor, k=2, max_new_tokens=4)
        assert len(answer.hits) == 2
