"""Lossless self-speculative decoding: identical to AR greedy, and distribution-preserving when sampling."""
import math

import pytest
from tiny_models import save_model

from edgegen import load
from edgegen.export import export_model
from edgegen.runtime.decoding import decode_blocks, decode_verified
from edgegen.runtime.drafting import DraftStats, FixedDrafts
from edgegen.runtime.lookup import PromptLookup
from edgegen.runtime.pilot import FixedBlock
from edgegen.runtime.sampling import Sampler

PROMPTS = ["import json\ndef load(fp):", "class Encoder:\n    def __init__(self", "héllo wörld 🎉", "x = [1, 2,",
           "def f(a, b):\n    return", "# comment\n", "while True:\n", "print('done')"]


@pytest.mark.parametrize("block_size", [2, 4, 7])
def test_verify_greedy_is_token_for_token_ar(mars_model, block_size):
    for prompt in PROMPTS:
        ar = mars_model.generate(prompt, max_new_tokens=40, mode="ar")
        verified = mars_model.generate(prompt, max_new_tokens=40, mode="verify", block_size=block_size)
        assert verified.token_ids == ar.token_ids
        assert verified.stats.drafts_accepted <= verified.stats.drafts_proposed
        assert verified.stats.forwards + verified.stats.drafts_accepted >= verified.stats.new_tokens


def test_verify_keeps_only_confirmed_kv(mars_model):
    engine = mars_model.engine
    engine.rewind(0)
    prompt = mars_model.encode_prompt(PROMPTS[0])
    committed = []
    mask = mars_model.manifest.mask_token_id
    blocks = decode_verified(engine, prompt, FixedDrafts(4, masks=True, lookup=False), mask, Sampler(), DraftStats())
    for _, block in zip(range(8), blocks):
        committed += block
        assert engine.tokens == (prompt + committed)[:-1]  # everything but the newest token, never a mask


@pytest.fixture(scope="module")
def five_token_model(tmp_path_factory):
    """Vocabulary of 5 (mask id 3), so that whole sequence distributions can be enumerated."""
    root = tmp_path_factory.mktemp("five")
    src = save_model(root / "src", mars=True, vocab_size=5, seed=4)
    export_model(src, root / "model", quiet=True)
    return load(root / "model", provider="cpu", max_context=64)


def exact_distribution(model, prompt: list[int], length: int, temperature: float) -> dict:
    """P(first `length` sampled tokens), enumerated with AR forwards."""
    sampler, engine, result = Sampler(temperature=temperature), model.engine, {(): 1.0}
    for _ in range(length):
        grown = {}
        for prefix, p in result.items():
            engine.rewind(0)
            probs = sampler.distributions(engine.forward(prompt + list(prefix), 1)).values[0]
            grown.update({prefix + (t,): p * probs[t] for t in range(len(probs))})
        result = grown
    return result


def sample_sequences(model, prompt, length, runs, mode: str, temperature: float = 1.0) -> tuple[dict, DraftStats]:
    """Counts of the first `length` tokens over `runs` samplings, through the engine-level decoding loops."""
    counts, stats, mask = {}, DraftStats(), model.manifest.mask_token_id
    sampler = Sampler(temperature=temperature, seed=123)
    engine = model.engine
    for _ in range(runs):
        engine.rewind(0)
        blocks = {"verify": lambda: decode_verified(engine, prompt, FixedDrafts(4, masks=True, lookup=False), mask,
                                                   sampler, stats),
                  "verify_lookup": lambda: decode_verified(engine, prompt, FixedDrafts(3, masks=False, lookup=True),
                                                          mask, sampler, stats, PromptLookup(prompt)),
                  "verify_both": lambda: decode_verified(engine, prompt, FixedDrafts(3, masks=True, lookup=True),
                                                        mask, sampler, stats, PromptLookup(prompt)),
                  "ar": lambda: decode_blocks(model.engine, prompt, FixedBlock(1), mask, sampler),
                  "keep_all_masks": lambda: decode_blocks(model.engine, prompt, FixedBlock(4), mask, sampler,
                                                          threshold=0.0)}[mode]
        tokens = []
        for block in blocks():
            tokens += block
            if len(tokens) >= length:
                break
        key = tuple(tokens[:length])
        counts[key] = counts.get(key, 0) + 1
    return counts, stats


def chi_square_fits(counts: dict, expected: dict, runs: int) -> tuple[bool, float, float]:
    """Pearson chi-square against the exact distribution (cells with expected < 5 pooled), alpha = 0.001."""
    stat, pooled_obs, pooled_exp, cells = 0.0, 0, 0.0, 0
    for key, p in expected.items():
        e = p * runs
        if e < 5:
            pooled_obs, pooled_exp = pooled_obs + counts.get(key, 0), pooled_exp + e
            continue
        stat += (counts.get(key, 0) - e) ** 2 / e
        cells += 1
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        cells += 1
    df = cells - 1
    critical = df * (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3  # Wilson-Hilferty, z(0.999)
    return stat < critical, stat, critical


@pytest.mark.parametrize("mode", ["verify", "verify_lookup", "verify_both"])
def test_verify_sampling_follows_the_model_distribution(five_token_model, mode):
    prompt, length, runs = [1, 4, 0, 4, 1, 0], 3, 3000  # every token recurs: lookup always has drafts
    expected = exact_distribution(five_token_model, prompt, length, 1.0)
    assert math.isclose(sum(expected.values()), 1.0, rel_tol=1e-6)
    verified, stats = sample_sequences(five_token_model, prompt, length, runs, mode)
    assert stats.proposed > 0 and 0 < stats.accepted < stats.proposed, "both acceptance and rejection must occur"
    sources = {"verify": {"mask"}, "verify_lookup": {"lookup"}, "verify_both": {"mask", "lookup"}}
    assert set(stats.by_source) == sources[mode]
    ok, stat, critical = chi_square_fits(verified, expected, runs)
    assert ok, f"{mode} sampling: chi-square {stat:.1f} >= {critical:.1f}"
    if mode != "verify":
        return
    ar, _ = sample_sequences(five_token_model, prompt, length, runs, "ar")
    ok, stat, critical = chi_square_fits(ar, expected, runs)
    assert ok, f"AR sampling: chi-square {stat:.1f} >= {critical:.1f}"


def test_the_chi_square_check_has_power(five_token_model):
    """Keeping every mask draft unverified (threshold 0) samples another distribution, and the check sees it."""
    prompt, length, runs = [1, 4, 0], 3, 3000
    expected = exact_distribution(five_token_model, prompt, length, 1.0)
    counts, _ = sample_sequences(five_token_model, prompt, length, runs, "keep_all_masks")
    assert not chi_square_fits(counts, expected, runs)[0]
