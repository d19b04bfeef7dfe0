"""Every decoding mode against a reference: transformers' greedy generate, and an uncached block rule."""
import numpy as np
import pytest
import torch

from edgegen import EdgegenError, load
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.verify import load_reference
from edgegen.runtime.decoding import decode_blocks, reuse_cached_prefix
from edgegen.runtime.pilot import FixedBlock
from edgegen.runtime.sampling import Rows, Sampler

PROMPTS = ["import json\ndef load(fp):", "class Encoder:\n    def __init__(self", "héllo wörld 🎉", "x = [1, 2,"]
EOS = 2
# thresholds at which the tiny random MARS model accepts some mask tokens and rejects others
MIXED_THRESHOLDS = [("probability", 0.07), ("entropy", 5.0), ("margin", 0.02)]


@pytest.fixture(scope="module")
def references(checkpoints):
    return {name: load_reference(checkpoints[name], read_model_spec(checkpoints[name])) for name in ("mars", "llama")}


@pytest.fixture(scope="module")
def llama_model(exported):
    return load(exported["llama"], provider="cpu", max_context=256)


def hf_greedy(reference, prompt_ids, max_new_tokens):
    with torch.no_grad():
        ids = torch.tensor([prompt_ids])
        out = reference.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=EOS, pad_token_id=0)
    new = out[0, len(prompt_ids):].tolist()
    return new[:new.index(EOS)] if EOS in new else new


def reference_block_decode(reference, prompt_ids, block_size, mask_id, metric, threshold, max_accept, max_new_tokens):
    """The MARS rule with no KV cache: every step runs the whole sequence plus block_size masks."""
    sequence, out = list(prompt_ids), []
    while True:
        with torch.no_grad():
            logits = reference(torch.tensor([sequence + [mask_id] * block_size])).logits[0].double()
        rows = logits[len(sequence) - 1:len(sequence) - 1 + block_size]  # last committed token, masks 0..B-2
        probs = torch.softmax(rows, -1)
        tokens = rows.argmax(-1).tolist()
        top2 = probs.topk(2, -1).values
        scores = {"probability": probs.max(-1).values, "margin": top2[:, 0] - top2[:, 1],
                  "entropy": -(probs * probs.clamp_min(1e-300).log()).sum(-1)}[metric].tolist()
        accepted = 1
        while accepted < block_size and (scores[accepted] <= threshold if metric == "entropy"
                                         else scores[accepted] >= threshold):
            accepted += 1
        for token in tokens[:min(accepted, max_accept or block_size)]:
            if token == EOS:
                return out
            out.append(token)
            sequence.append(token)
            if len(out) == max_new_tokens:
                return out


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ar_and_block_at_threshold_one_equal_transformers_greedy(prompt, mars_model, references):
    ids = mars_model.encode_prompt(prompt)
    expected = hf_greedy(references["mars"], ids, 40)
    ar = mars_model.generate(prompt, max_new_tokens=40, block_size=1)
    block = mars_model.generate(prompt, max_new_tokens=40, block_size=4, threshold=1.0)
    assert ar.token_ids == expected
    assert block.token_ids == expected
    assert ar.stats.forwards == block.stats.forwards  # threshold 1.0 accepts exactly one token per forward


def test_llama_ar_equals_transformers_greedy(llama_model, references):
    for prompt in PROMPTS:
        assert llama_model.generate(prompt, max_new_tokens=30).token_ids == \
            hf_greedy(references["llama"], llama_model.encode_prompt(prompt), 30)


@pytest.mark.parametrize("metric, threshold", MIXED_THRESHOLDS)
@pytest.mark.parametrize("block_size, max_accept", [(4, None), (6, None), (6, 3), (2, None)])
def test_cached_block_decoding_equals_uncached_reference(metric, threshold, block_size, max_accept, mars_model,
                                                         references):
    accepted_many = False
    for prompt in PROMPTS:
        result = mars_model.generate(prompt, max_new_tokens=48, block_size=block_size, threshold=threshold,
                                     acceptance=metric, max_accept=max_accept)
        expected = reference_block_decode(references["mars"], mars_model.encode_prompt(prompt), block_size,
                                          mars_model.manifest.mask_token_id, metric, threshold, max_accept, 48)
        assert result.token_ids == expected
        assert result.stats.tokens_per_forward <= (max_accept or block_size)
        accepted_many |= result.stats.tokens_per_forward > 1.2
    assert accepted_many, "the thresholds should make the model accept mask tokens"


def test_kv_cache_holds_exactly_the_committed_tokens(mars_model):
    engine = mars_model.engine
    engine.rewind(0)
    prompt = mars_model.encode_prompt(PROMPTS[0])
    committed = []
    blocks = decode_blocks(engine, reuse_cached_prefix(engine, prompt), FixedBlock(4),
                           mars_model.manifest.mask_token_id, Sampler(), threshold=0.0)
    for _, block in zip(range(6), blocks):
        assert len(block) == 4  # threshold 0 accepts the whole block
        # the tokens just committed are fed (and cached) by the next forward, never the masks
        assert engine.tokens == prompt + committed
        committed += block


def test_chat_style_prefix_reuse_keeps_outputs_identical(mars_model):
    first = mars_model.generate(PROMPTS[1], max_new_tokens=20, block_size=1)
    again = mars_model.generate(PROMPTS[1], max_new_tokens=20, block_size=1)
    assert again.stats.cached_prompt_tokens == again.stats.prompt_tokens - 1
    assert again.token_ids == first.token_ids


def test_sampling_is_reproducible_with_a_seed(mars_model):
    """At a fixed block size; the second run of each pair starts from a cache that already holds the prompt."""
    def run(seed, **options):
        return mars_model.generate(PROMPTS[0], max_new_tokens=30, temperature=0.8, seed=seed, **options).token_ids

    assert run(1, block_size=1) == run(1, block_size=1)
    assert run(1, block_size=1) != run(2, block_size=1)
    assert run(3, block_size=4, threshold=0.05) == run(3, block_size=4, threshold=0.05)
    assert run(4, mode="verify", block_size=4) == run(4, mode="verify", block_size=4)


def test_top_k_one_and_tiny_top_p_are_greedy(mars_model):
    greedy = mars_model.generate(PROMPTS[0], max_new_tokens=25, block_size=1).token_ids
    assert mars_model.generate(PROMPTS[0], max_new_tokens=25, block_size=1, temperature=1.5, top_k=1,
                               seed=0).token_ids == greedy
    assert mars_model.generate(PROMPTS[0], max_new_tokens=25, block_size=1, temperature=1.5, top_p=1e-9,
                               seed=0).token_ids == greedy


def test_sampler_matches_the_target_distribution():
    sampler = Sampler(temperature=1.0, seed=0)
    logits = Rows(np.log(np.array([[0.5, 0.3, 0.2]])))
    draws = np.array([sampler.sample(logits)[0][0] for _ in range(6000)])
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 6000, [0.5, 0.3, 0.2], atol=0.03)
    top_p = Sampler(temperature=1.0, top_p=0.7).distributions(logits).values[0]
    np.testing.assert_allclose(top_p, [0.625, 0.375, 0.0])


def test_generation_reaching_the_context_stops_with_a_reason(exported):
    model = load(exported["mars"], provider="cpu", max_context=40)
    prompt = "x " * 10
    result = model.generate(prompt, max_new_tokens=500, block_size=4, threshold=0.0)
    assert result.stop_reason in ("context_full", "eos")
    assert len(model.encode_prompt(prompt)) + result.stats.new_tokens <= 41
    if result.stop_reason == "context_full":
        assert model.engine.tokens[:len(model.encode_prompt(prompt))] == model.encode_prompt(prompt)


def test_prompt_longer_than_the_context_is_a_clear_error(exported):
    model = load(exported["mars"], provider="cpu", max_context=32)
    with pytest.raises(EdgegenError, match="prompt has .* tokens but max_context is 32"):
        model.generate("word " * 100)


def test_chat_messages_are_a_prompt_too(mars_model):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    ids = mars_model.tokenizer.encode(mars_model.tokenizer.apply_chat_template(messages), add_special_tokens=False)
    assert mars_model.encode_prompt(messages) == ids
    generation = mars_model.stream(ids, max_new_tokens=6)
    list(generation)  # runs it
    assert mars_model.generate(messages, max_new_tokens=6).token_ids == generation.result.token_ids
    assert mars_model.encode_prompt("hello", chat=True) == mars_model.encode_prompt(messages[1:])
    assert mars_model.generate([5, 6, 7], max_new_tokens=3).stats.prompt_tokens == 3  # token ids as they are
    for bad in ([1, "2"], [{"content": "no role"}], None, 5, np.array([1, 2])):
        with pytest.raises(EdgegenError, match="a prompt is a str, a list of chat messages .* or a list of token ids"):
            mars_model.generate(bad)
    with pytest.raises(EdgegenError, match="the prompt is empty"):
        mars_model.generate([])


@pytest.mark.parametrize("options, message", [
    ({"block_size": 0}, "block_size must be"),
    ({"threshold": 1.5}, "threshold"),
    ({"acceptance": "vibes"}, "acceptance must be one of"),
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_accept": 0}, "max_accept"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"mode": "turbo"}, "mode must be one of"),
    ({"treshold": 0.9}, "unknown generation option.*treshold"),
    ({"block_size": "fast"}, "block_size must be"),
])
def test_invalid_options_are_named(mars_model, options, message):
    with pytest.raises(EdgegenError, match=message):
        mars_model.generate("hi", **options)


def test_threshold_mode_needs_a_mask_token(llama_model):
    with pytest.raises(EdgegenError, match="no <\\|mask\\|> token, so threshold mode cannot run"):
        llama_model.generate("hi", threshold=0.9)
    with pytest.raises(EdgegenError, match="no <\\|mask\\|> token, so it has no mask drafts"):
        llama_model.generate("hi", drafts="mask")
    assert llama_model.generate("hi", max_new_tokens=3).stats.mode == "verify"  # lookup drafts by default


def test_ar_counts_exactly_one_token_per_forward_whether_or_not_it_ends_on_eos(mars_model):
    for prompt in PROMPTS:
        for max_new_tokens in (3, 200):
            stats = mars_model.generate(prompt, max_new_tokens=max_new_tokens, mode="ar").stats
            assert stats.tokens_per_forward == 1.0 and stats.decoded_tokens == stats.forwards
