"""Graphs exported with top-k outputs: the same tokens as whole logit rows, in every mode that can use them."""
import numpy as np
import pytest

from edgegen import EdgegenError, load
from edgegen.export import export_model

TOPK = 8
PROMPTS = ["import json\ndef load(fp):", "héllo wörld 🎉"]
MIXED_THRESHOLDS = [("probability", 0.07), ("margin", 0.02)]  # as in test_decoding: some masks pass, some fail


@pytest.fixture(scope="module")
def topk_model(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("topk") / "model"
    export_model(checkpoints["mars"], out, topk=TOPK, quiet=True)
    return load(out, provider="cpu", max_context=256)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def assert_topk_rows_match_logits(engine) -> None:
    ids = [5, 17, 42, 99, 7, 300, 12]
    engine.rewind(0)
    logits = engine.logits(ids, 3)
    engine.rewind(0)
    rows = engine.forward(ids, 3, top_k=True)
    engine.rewind(0)
    expected = np.sort(np.argsort(-logits, axis=-1, kind="stable")[:, :TOPK], axis=-1)
    np.testing.assert_array_equal(rows.ids, expected)  # sorted by token id
    np.testing.assert_array_equal(rows.values, np.take_along_axis(logits, expected, -1))
    np.testing.assert_allclose(rows.values - rows.logsumexp[:, None],
                               np.take_along_axis(log_softmax(logits), expected, -1), atol=1e-5)


def test_topk_outputs_are_the_most_likely_tokens_and_their_log_probabilities(topk_model):
    assert_topk_rows_match_logits(topk_model.engine)


@pytest.mark.parametrize("variant", [{"attention": "standard"}, {"dtype": "int8"}, {"dtype": "fp16"}])
def test_topk_outputs_in_other_graph_variants(checkpoints, tmp_path, variant):
    export_model(checkpoints["mars"], tmp_path / "model", topk=TOPK, quiet=True, verify=False, **variant)
    assert_topk_rows_match_logits(load(tmp_path / "model", provider="cpu", max_context=64).engine)


OPTIONS = [
    {"mode": "ar"},
    {"mode": "verify", "block_size": 4},
    {"mode": "verify"},
    *({"mode": "threshold", "block_size": 4, "acceptance": metric, "threshold": tau}
      for metric, tau in MIXED_THRESHOLDS),
    {"mode": "ar", "temperature": 1.0, "top_k": TOPK, "seed": 3},
    {"mode": "ar", "temperature": 0.8, "top_k": 5, "top_p": 0.9, "seed": 4},
    {"mode": "verify", "block_size": 4, "temperature": 1.0, "top_k": 6, "seed": 5},
    {"mode": "threshold", "block_size": 4, "threshold": 0.05, "temperature": 0.7, "top_k": TOPK, "seed": 6},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_tokens_with_top_k_outputs_equal_those_from_whole_rows(topk_model, options):
    for prompt in PROMPTS:
        full = topk_model.generate(prompt, max_new_tokens=40, full_logits=True, **options).token_ids
        assert topk_model.engine._outputs[1] is False
        topk = topk_model.generate(prompt, max_new_tokens=40, **options).token_ids
        assert topk_model.engine._outputs[1] is True, "the generation did not read the top-k outputs"
        assert topk == full


@pytest.mark.parametrize("options", [{"temperature": 1.0, "seed": 0}, {"temperature": 1.0, "top_k": TOPK + 1},
                                     {"mode": "threshold", "acceptance": "entropy", "threshold": 5.0}])
def test_whole_rows_serve_what_top_k_outputs_cannot(topk_model, options):
    topk_model.generate(PROMPTS[0], max_new_tokens=5, **options)
    assert topk_model.engine._outputs[1] is False


def test_asking_a_graph_without_top_k_outputs_for_them_is_a_clear_error(mars_model):
    mars_model.engine.rewind(0)
    with pytest.raises(EdgegenError, match="--topk"):
        mars_model.engine.forward([5, 6], 1, top_k=True)
    mars_model.engine.rewind(0)


def test_export_rejects_a_topk_out_of_range(checkpoints, tmp_path):
    with pytest.raises(EdgegenError, match="--topk must be within"):
        export_model(checkpoints["mars"], tmp_path / "out", topk=-1, quiet=True)
