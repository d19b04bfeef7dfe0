"""Adaptive block size: the cost curve, the choice rule, and that 'auto' keeps every mode's guarantees."""
import json

import numpy as np
import pytest

from edgegen.runtime.pilot import PROBE_EVERY, BlockPilot, CostCurve

PROMPTS = ["import json\ndef load(fp):", "class Encoder:\n    def __init__(self", "x = [1, 2,"]


def test_cost_curve_is_measured_once_and_cached(exported, tmp_path, monkeypatch):
    from edgegen import load

    monkeypatch.setenv("EDGEGEN_CACHE", str(tmp_path))
    model = load(exported["mars"], provider="cpu", max_context=128, threads=1)
    curve = model.cost_curve
    assert curve.sizes == [1, 2, 4, 8, 16, 32] and all(s > 0 for s in curve.seconds)
    assert model.engine.tokens == []
    cached = json.loads((tmp_path / "cost_curves.json").read_text())
    assert len(cached) == 1 and next(iter(cached.values()))["seconds"] == curve.seconds
    again = load(exported["mars"], provider="cpu", max_context=128, threads=1).cost_curve
    assert again.seconds == curve.seconds  # read back, not measured again


def test_curve_interpolates_and_extrapolates():
    curve = CostCurve([1, 2, 4, 8], [1.0, 1.0, 2.0, 6.0])
    assert curve(3) == pytest.approx(1.5) and curve(6) == pytest.approx(4.0)
    assert curve(40) == pytest.approx(6.0 + 32 * 1.0)  # beyond the last size, the last slope carries on


def test_pilot_picks_the_best_rate_and_learns():
    cheap = CostCurve([1, 32], [1.0, 1.0])  # extra tokens are free: propose as many as allowed
    steep = CostCurve([1, 2, 32], [1.0, 2.0, 32.0])  # each token costs a full forward: never worth it
    assert BlockPilot(cheap, 5).choose(1) == 5
    assert BlockPilot(steep, 5).choose(1) == 0
    learning = BlockPilot(CostCurve([1, 2, 8], [1.0, 1.3, 3.0]), 3)
    for _ in range(60):
        learning.observe(3, 3)
    assert learning.acceptance == pytest.approx(np.ones(3), abs=0.01)
    assert learning.choose(1) == 3
    for _ in range(60):
        learning.observe(3, 0)  # position 1 always fails; later positions are never reached
    assert learning.acceptance[0] < 0.01 and learning.acceptance[1] > 0.99
    assert learning.choose(1) == 0


def test_pilot_probes_after_a_run_of_zero_masks():
    stuck = BlockPilot(CostCurve([1, 2], [1.0, 2.0]), 3)
    choices = [stuck.choose(1) for _ in range(3 * (PROBE_EVERY + 1))]
    assert choices.count(1) == 3 and set(choices) == {0, 1}


@pytest.mark.parametrize("mode", ["verify", "threshold"])
def test_auto_block_size_keeps_greedy_exactness(mars_model, mode):
    for prompt in PROMPTS:
        ar = mars_model.generate(prompt, max_new_tokens=30, mode="ar")
        exact = {"threshold": 1.0} if mode == "threshold" else {}
        auto = mars_model.generate(prompt, max_new_tokens=30, mode=mode, block_size="auto", max_block_size=6, **exact)
        assert auto.token_ids == ar.token_ids
