"""A decoder exported with latent inputs: vectors spliced into the input embeddings, checked against
transformers fed the same inputs_embeds, through every decoding mode."""
import numpy as np
import pytest
import torch

from edgegen import EdgegenError
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.verify import load_reference
from edgegen.runtime.engine import Latent


@pytest.fixture(scope="module")
def reference(checkpoints):
    return load_reference(checkpoints["mars"], read_model_spec(checkpoints["mars"]))


def latent(seed: int, size: int = 64) -> Latent:
    return Latent(np.random.default_rng(seed).standard_normal(size).astype(np.float32) * 0.5)


def prompt_with_latents(model) -> list:
    ids = model.encode_prompt("Latent context 1: ")
    question = model.encode_prompt(" what does it say?")
    return ids + [latent(1)] + model.encode_prompt(" Latent context 2: ") + [latent(2)] + question


def reference_embeds(reference, items) -> torch.Tensor:
    table = reference.get_input_embeddings().weight.detach()
    rows = [torch.from_numpy(item.vector) if isinstance(item, Latent) else table[item] for item in items]
    return torch.stack(rows)[None]


def test_spliced_latents_match_transformers_inputs_embeds(latent_model, reference):
    items = prompt_with_latents(latent_model)
    with torch.no_grad():
        expected = reference(inputs_embeds=reference_embeds(reference, items)).logits[0].numpy()
    engine = latent_model.engine
    engine.rewind(0)
    got = np.concatenate([engine.logits(items[:-4], len(items) - 4), engine.logits(items[-4:], 4)])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def hf_greedy_from_embeds(reference, items, max_new_tokens):
    with torch.no_grad():
        out = reference.generate(inputs_embeds=reference_embeds(reference, items), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=2, pad_token_id=0,
                                 attention_mask=torch.ones(1, len(items), dtype=torch.long))
    new = out[0].tolist()
    return new[:new.index(2)] if 2 in new else new


@pytest.mark.parametrize("options", [{"mode": "ar"}, {"mode": "threshold", "block_size": 4, "threshold": 1.0},
                                     {"mode": "verify", "block_size": 4}])
def test_every_mode_generates_the_greedy_answer_with_latents(latent_model, reference, options):
    items = prompt_with_latents(latent_model)
    result = latent_model.stream(items, max_new_tokens=20, **options)
    list(result)
    assert result.result.token_ids == hf_greedy_from_embeds(reference, items, 20)


def test_cached_prefix_stops_at_a_different_latent(latent_model):
    items = prompt_with_latents(latent_model)
    first = latent_model.stream(items, max_new_tokens=4, mode="ar")
    list(first)
    same = latent_model.stream(items, max_new_tokens=4, mode="ar")
    list(same)
    assert same.result.stats.cached_prompt_tokens == len(items) - 1
    changed = items[:]
    changed[items.index(latent(2))] = latent(3)
    other = latent_model.stream(changed, max_new_tokens=4, mode="ar")
    list(other)
    assert other.result.stats.cached_prompt_tokens == items.index(latent(2))


def test_latents_need_a_latent_graph_of_the_right_size(mars_model, latent_model):
    with pytest.raises(EdgegenError, match="re-export it with `edgegen export --latent-inputs`"):
        mars_model.stream([5, latent(1), 6])
    with pytest.raises(EdgegenError, match="hidden size 64"):
        latent_model.stream([5, latent(1, size=10), 6])
