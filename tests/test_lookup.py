"""Lookup drafts and the draft pilot: proposals, choices, and that verify stays token-for-token AR with them."""
import numpy as np
import pytest

from edgegen import EdgegenError, GenerationOptions, load
from edgegen.runtime.drafting import LOOKUP, MASK, DraftPilot, Plan
from edgegen.runtime.engine import Latent
from edgegen.runtime.lookup import PromptLookup
from edgegen.runtime.pilot import PROBE_EVERY, CostCurve

REPEATING = ["def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return", "x = x + 1\nx = x + 1\nx = x + 1\nx =",
             "import json\nimport json\nimport", "[1, 2, 3, 1, 2, 3, 1, 2,"]


def test_lookup_continues_the_longest_most_recent_match():
    lookup = PromptLookup([7, 1, 2, 9, 5, 1, 2, 3, 4, 8, 2])
    assert lookup.propose(3) == ([3, 4, 8], 1)  # only "2" recurs; its most recent earlier occurrence wins
    lookup.extend([9])
    assert lookup.propose(3) == ([5, 1, 2], 2)  # "2 9" occurred once


def test_lookup_never_matches_its_own_suffix_and_copies_past_the_end():
    assert PromptLookup([4, 5, 6]).propose(4) == ([], 0)
    assert PromptLookup([4, 5, 4, 5]).propose(5) == ([4, 5, 4, 5, 4], 2)  # "4 5" repeats on and on


def test_lookup_stops_at_a_latent_vector():
    latent = Latent(np.ones(4))
    assert PromptLookup([3, latent, 8, 3]).propose(3) == ([], 1)
    assert PromptLookup([3, 8, latent, 3]).propose(3) == ([8], 1)


@pytest.mark.parametrize("options", [{"drafts": "lookup", "block_size": 5}, {"drafts": "lookup"},
                                     {"drafts": "auto", "block_size": 4}, {}])
def test_lookup_verify_is_token_for_token_ar_on_mars(mars_model, options):
    proposed = 0
    for prompt in REPEATING:
        ar = mars_model.generate(prompt, max_new_tokens=40, mode="ar")
        verified = mars_model.generate(prompt, max_new_tokens=40, **options)
        assert verified.stats.mode == "verify" and verified.token_ids == ar.token_ids
        proposed += verified.stats.drafts_by_source.get(LOOKUP, {}).get("proposed", 0)
    assert proposed > 0 or "block_size" not in options


def test_lookup_verify_on_a_model_without_mask_token(exported):
    model = load(exported["llama"], provider="cpu", max_context=256)
    for prompt in REPEATING:
        ar = model.generate(prompt, max_new_tokens=40, mode="ar")
        for options in ({}, {"block_size": 6}):
            verified = model.generate(prompt, max_new_tokens=40, **options)
            assert verified.token_ids == ar.token_ids
            assert MASK not in verified.stats.drafts_by_source
    assert verified.stats.drafts_by_source[LOOKUP]["proposed"] > 0


def test_draft_sources_belong_to_verify(mars_model):
    with pytest.raises(EdgegenError, match="drafts='lookup' belongs to mode='verify', not mode='ar'"):
        mars_model.generate("x", mode="ar", drafts="lookup")
    with pytest.raises(EdgegenError, match="drafts must be one of auto, mask, lookup"):
        mars_model.generate("x", drafts="ngram")


def test_stats_count_drafts_by_source(mars_model):
    result = mars_model.generate(REPEATING[1], max_new_tokens=30, block_size=4)
    by_source = result.stats.drafts_by_source
    assert sum(s["proposed"] for s in by_source.values()) == result.stats.drafts_proposed
    assert sum(s["accepted"] for s in by_source.values()) == result.stats.drafts_accepted
    assert all(0 <= s["accepted"] <= s["proposed"] for s in by_source.values())


def test_pilot_weighs_drafts_against_their_cost():
    history = [1, 2, 3, 4, 5, 6, 7, 8, 1]  # "1" recurs: lookup offers 2 3 4 ...
    cheap = DraftPilot(CostCurve([1, 32], [1.0, 1.0]), max_masks=0, lookup_max=6)
    assert cheap.plan(1, 100, [], PromptLookup(history)).drafts == [2, 3, 4, 5, 6]  # a 6th is reached 1.6% of times
    steep = DraftPilot(CostCurve([1, 2, 32], [1.0, 2.0, 32.0]), max_masks=3, lookup_max=6)
    plan = steep.plan(1, 100, [9, 9, 9], PromptLookup(history))
    assert plan == Plan(None, [], 0)


def test_pilot_learns_from_offers_it_did_not_take():
    pilot = DraftPilot(CostCurve([1, 2, 32], [1.0, 2.0, 32.0]), max_masks=3, lookup_max=6)
    history = [1, 2, 3, 4, 1]
    for _ in range(40):
        plan = pilot.plan(1, 100, [5, 6], PromptLookup(history))  # too dear to check anything but probes ...
        pilot.observe(plan, [7])  # ... yet each step shows the mask drafts and lookup drafts were wrong
    assert pilot.acceptance[(MASK, 0)][0] < 0.01 and pilot.acceptance[(LOOKUP, 1)][0] < 0.01
    assert pilot.acceptance[(MASK, 0)][1] == pytest.approx(0.5)  # never reached, never judged


def test_pilot_probes_a_source_it_keeps_passing_over():
    pilot = DraftPilot(CostCurve([1, 2, 32], [1.0, 2.0, 32.0]), max_masks=0, lookup_max=4)
    plans = [pilot.plan(1, 100, [], PromptLookup([1, 2, 3, 1])) for _ in range(3 * (PROBE_EVERY + 1))]
    assert [len(p.drafts) for p in plans].count(1) == 3 and {len(p.drafts) for p in plans} == {0, 1}


def test_pilot_stays_within_the_room_left():
    pilot = DraftPilot(CostCurve([1, 32], [1.0, 1.0]), max_masks=3, lookup_max=16)
    plan = pilot.plan(1, 2, [4, 5, 6], PromptLookup([1, 2, 3, 4, 1]))
    assert len(plan.drafts) + plan.masks <= 2


def test_chat_settings_switch_modes_cleanly(mars_model):
    from edgegen.chat import parse_setting

    options = parse_setting("threshold=0.8", {"drafts": "auto"}, mars_model)  # a threshold asks for threshold mode
    assert GenerationOptions(**options).check(mars_model.manifest).mode == "threshold"
    options = parse_setting("mode=verify", options, mars_model)  # drops the threshold it no longer uses
    assert "threshold" not in options
    options = parse_setting("drafts=lookup", options, mars_model)
    options = parse_setting("block=auto", options, mars_model)
    assert options == {"mode": "verify", "drafts": "lookup", "block_size": "auto"}
    assert "drafts" not in parse_setting("mode=ar", options, mars_model)
    with pytest.raises(EdgegenError, match="drafts must be one of"):
        parse_setting("drafts=every", options, mars_model)
