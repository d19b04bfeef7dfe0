"""`edgegen train memory` and `train reader`: the objectives, and that what the trainer computes in
PyTorch is what the exported graphs compute on the device."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgegen.export.checkpoint import read_model_spec
from edgegen.export.compressor_graph import export_memory
from edgegen.export.verify import load_reference
from edgegen.runtime.compressor import REFERENCE_LAYOUT, Compressor
from edgegen.runtime.rag import build_prompt
from edgegen.runtime.tokenizer import Tokenizer
from edgegen.train.compressor_training import (
    MemoryModel,
    contrastive_loss,
    distillation_loss,
    gold_answer_losses,
    memory_loss,
    prompt_embeds,
    save_memory,
    truncate_layers,
)
from edgegen.train.knowledge import Question, answer_ids
from edgegen.train.trainer import TOKENIZER_FILES

FACTS = {"ada/city": "Ada Lovelace was born in London.", "ada/year": "Ada Lovelace was born in 1815.",
         "alan/city": "Alan Turing was born in Maida Vale.", "alan/year": "The year 1912 saw Alan Turing born."}
QUESTIONS = [("Where was Ada Lovelace born?", "London", "ada/city"), ("When was Ada born?", "1815", "ada/year"),
             ("Where was Alan Turing born?", "Maida Vale", "alan/city"), ("When was Alan born?", "1912", "alan/year")]


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    root = tmp_path_factory.mktemp("kb")
    (root / "evidence.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in FACTS.items()))
    (root / "questions.jsonl").write_text("".join(
        json.dumps({"question": q, "answer": a, "positive_ids": [i], "hard_negative_ids": [j for j in FACTS if j != i]})
        + "\n" for q, a, i in QUESTIONS))
    return root


def memory_model(checkpoints, seed: int = 0, tune_generator: bool = False) -> MemoryModel:
    base = checkpoints["qwen2_4x"]
    lm = load_reference(base, read_model_spec(base))
    truncate_layers(lm, 1)
    generator = load_reference(checkpoints["mars"], read_model_spec(checkpoints["mars"]))
    torch.manual_seed(seed)
    model = MemoryModel(lm, generator, retrieval_dim=16, rank=4, alpha=8, tune_generator=tune_generator)
    with torch.no_grad():  # trained-looking weights: B is zero at initialisation
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.normal_(0, 0.2)
    return model.eval()


def test_trained_compressor_exports_to_the_same_vectors(checkpoints, tmp_path):
    """Left-padded batches in training, [MEM] at len(text) on the device: the same latents either way."""
    model = memory_model(checkpoints)
    texts = list(FACTS.values()) + ["x"]
    save_memory(model, checkpoints["qwen2_4x"], checkpoints["mars"], tmp_path / "trained", 32, [], TOKENIZER_FILES)
    export_memory(tmp_path / "trained", tmp_path / "exported")
    compressor = Compressor(tmp_path / "exported", provider="cpu")
    ids = [compressor._ids(t)[0].tolist() for t in texts]
    with torch.no_grad():
        h = model.encode(ids, "compress")
        retrieval, projected = model.retrieval(h).numpy(), model.cross_proj(h).numpy()
        query = model.retrieval(model.encode(ids[:1], "query")).numpy()[0]
    device_retrieval, device_projected = compressor.embed_evidence(texts)
    np.testing.assert_allclose(device_retrieval, retrieval, atol=1e-4)
    np.testing.assert_allclose(device_projected, projected, atol=1e-4)
    np.testing.assert_allclose(compressor.embed_query(texts[0]), query, atol=1e-4)
    assert compressor.manifest.max_evidence_tokens == 32
    assert compressor.manifest.generator["hidden_size"] == 64


def test_latents_start_at_the_size_of_a_token_embedding(checkpoints):
    model = memory_model(checkpoints)
    with torch.no_grad():
        latents = model.cross_proj(torch.randn(8, model.lm.config.hidden_size) * 5)
    tokens = model.generator.get_input_embeddings().weight
    ratio = latents.norm(dim=-1).mean() / tokens.norm(dim=-1).mean()
    assert 0.8 < ratio < 1.25, ratio


def test_align_pulls_the_right_latent_toward_its_answer_slot(checkpoints):
    model = memory_model(checkpoints, tune_generator=True)
    tokenizer = Tokenizer(checkpoints["mars"])
    q, a, i = QUESTIONS[0]
    question = Question(tokenizer.encode(q, add_special_tokens=False), q, a, [FACTS[i]], [])
    answer = answer_ids(tokenizer, " " + a)[:-1]
    slot = model.generator.get_input_embeddings()(torch.tensor(answer)).mean(0)
    with torch.no_grad():
        at_slot = gold_answer_losses(model, tokenizer, [question], [[FACTS[i]]], {FACTS[i]: slot}, {FACTS[i]: slot * 3})
        elsewhere = gold_answer_losses(model, tokenizer, [question], [[FACTS[i]]], {FACTS[i]: slot}, {FACTS[i]: -slot})
    assert at_slot["align"] < 1e-6 and elsewhere["align"] == pytest.approx(2.0)


def test_contrastive_loss_prefers_the_positive():
    queries = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    noise = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    aligned = contrastive_loss(queries, torch.cat([queries, noise]), [[0], [1], [2]])
    shuffled = contrastive_loss(queries, torch.cat([queries, noise]), [[3], [4], [5]])
    assert aligned < 0.1 < shuffled
    assert contrastive_loss(queries, queries, [[0], [1], [2]]) > 0  # a loss, never negative


def test_student_prompt_splices_latents_where_the_runtime_does(checkpoints):
    model = memory_model(checkpoints)
    tokenizer = Tokenizer(checkpoints["mars"])
    latent = torch.full((64,), 7.0)
    embeds = prompt_embeds(model.generator, tokenizer, "Q?", [latent])
    items, _ = build_prompt(tokenizer, REFERENCE_LAYOUT, "Q?", [latent])
    at = next(i for i, item in enumerate(items) if not isinstance(item, int))
    assert embeds.shape == (len(items), 64) and torch.equal(embeds[at], latent)
    table = model.generator.get_input_embeddings()
    assert torch.equal(embeds[at - 1], table(torch.tensor(items[at - 1])))


def test_distillation_is_zero_when_the_student_reads_what_the_teacher_reads(checkpoints):
    """A latent equal to the embedding of a one-token evidence text gives the student the teacher's input
    (up to the label), so the KL is near zero there and larger for a random latent."""
    model = memory_model(checkpoints)
    tokenizer = Tokenizer(checkpoints["mars"])
    table = model.generator.get_input_embeddings()
    token = tokenizer.encode("x", add_special_tokens=False)
    assert len(token) == 1
    question = type("Q", (), {"question": "What?", "positives": ["x"]})()
    # teacher and student prompts then match token for token
    same_labels = {**REFERENCE_LAYOUT, "label": REFERENCE_LAYOUT["text_label"]}
    eos = tokenizer.fast.token_to_id(tokenizer.special_tokens["eos_token"])
    with torch.no_grad():
        same = distillation_loss(model, tokenizer, [question], {"x": table(torch.tensor(token))[0]}, [["x"]], eos, 4,
                                 same_labels)
        other = distillation_loss(model, tokenizer, [question], {"x": torch.randn(64) * 3}, [["x"]], eos, 4,
                                  same_labels)
    assert same < 1e-5 < other


@pytest.mark.parametrize("tune_generator", [False, True])
def test_gradients_reach_exactly_the_trainable_parts(checkpoints, tune_generator):
    model = memory_model(checkpoints, tune_generator=tune_generator).train()
    tokenizer = Tokenizer(checkpoints["mars"])
    questions = [Question(tokenizer.encode(q, add_special_tokens=False), q, a, [FACTS[i]],
                          [t for j, t in FACTS.items() if j != i]) for q, a, i in QUESTIONS]
    losses = memory_loss(model, questions, Tokenizer(checkpoints["qwen2_4x"]), tokenizer, 32, 3, seed=0)
    gold = {"latent_answer", "text_answer", "slot_answer", "align"}
    assert set(losses) == {"loss", "recon", "contrast"} | (gold if tune_generator else {"distill"})
    losses["loss"].backward()
    grads = {name: p.grad is not None and bool(p.grad.abs().sum() > 0) for name, p in model.named_parameters()}
    assert grads["mem_embedding"] and grads["cross_proj.net.0.weight"] and grads["retrieval_proj.0.weight"]
    assert any(g for name, g in grads.items() if "lora_B.compress" in name)
    assert any(g for name, g in grads.items() if "lora_B.query" in name)
    assert not any(g for name, g in grads.items() if name.startswith("lm.") and "lora_" not in name)
    assert any(g for name, g in grads.items() if name.startswith("generator.")) == tune_generator


def edgegen(*args, timeout=600):
    run = subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stderr
    return run


def test_train_reader_then_memory_then_rag(checkpoints, kb, tmp_path):
    """The whole chain on tiny models: reader fine-tune, compressor training, export, index, ask."""
    common = ["--evidence", kb / "evidence.jsonl", "--questions", kb / "questions.jsonl", "--batch-size", 2]
    edgegen("train", "reader", checkpoints["mars"], tmp_path / "reader", "--steps", 2, *common)
    edgegen("train", "memory", checkpoints["qwen2_4x"], tmp_path / "memory", "--generator", tmp_path / "reader",
            "--base-layers", 1, "--rank", 4, "--retrieval-dim", 16, "--distill-tokens", 3, "--steps", 3, *common)
    log = [json.loads(line) for line in (tmp_path / "memory" / "train_log.jsonl").open()]
    assert len(log) == 3 and all(row["recon"] > 0 and row["contrast"] > 0 and row["distill"] >= 0 for row in log)
    edgegen("export-memory", tmp_path / "memory", tmp_path / "compressor")
    edgegen("export", tmp_path / "reader", tmp_path / "generator", "--latent-inputs")
    edgegen("rag", "index", tmp_path / "store", "--compressor", tmp_path / "compressor", kb / "evidence.jsonl")
    run = edgegen("rag", "ask", tmp_path / "store", "--generator", tmp_path / "generator", "--compressor",
                  tmp_path / "compressor", "Where was Ada born?", "--k", 2, "--json", "--max-new-tokens", 4)
    answer = json.loads(run.stdout)
    assert len(answer["sources"]) == 2 and answer["prompt_tokens"] > 0
