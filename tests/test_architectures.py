"""Every architecture edgegen exports, each a tiny random-weight model built with transformers, against
transformers on the same weights: logits, greedy tokens, block decoding and latent inputs."""
import numpy as np
import pytest
import torch
from tiny_models import save_model

from edgegen import load
from edgegen.export import ExportError, export_model
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.verify import BOUNDS, load_reference
from edgegen.runtime.engine import Engine, Latent
from edgegen.runtime.manifest import Manifest

# each with what sets it apart switched on where a 15-token test can see it: windows of 5 tokens, partial
# rotary, per-layer-type rotary bases with linear scaling (Gemma 3's global layers)
ARCHITECTURES = {
    "qwen3": {},
    "a2d-qwen3": {"arch": "qwen3", "mars": True},
    "mistral": {"sliding_window": 5},
    "phi3": {"partial_rotary_factor": 0.5, "head_dim": 32},
    "gemma2": {"sliding_window": 5},
    "gemma3_text": {"sliding_window": 5, "layer_types": ["sliding_attention", "full_attention"],
                    "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                        "full_attention": {"rope_type": "linear", "factor": 8.0,
                                                           "rope_theta": 1000000.0}}},
}
PROMPT = np.random.default_rng(7).integers(3, 500, 15).tolist()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("architectures")
    made = {}
    for seed, (name, config) in enumerate(ARCHITECTURES.items()):
        config = dict(config)
        made[name] = save_model(root / name, arch=config.pop("arch", name), seed=10 + seed, **config)
    return made


@pytest.fixture(scope="module")
def exports(sources, tmp_path_factory):
    """(name, attention) -> an fp32 export, verified by the exporter's own gate."""
    root = tmp_path_factory.mktemp("architecture-exports")
    return {(name, attention): export_model(src, root / f"{name}-{attention}", attention=attention, quiet=True)
            and root / f"{name}-{attention}" for name, src in sources.items() for attention in ("gqa", "standard")}


def reference(src, **inputs) -> np.ndarray:
    with torch.no_grad():
        return load_reference(src, read_model_spec(src))(**inputs).logits[0].numpy()


@pytest.mark.parametrize("attention", ["gqa", "standard"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_logits_match_transformers_over_prefill_and_cached_steps(sources, exports, name, attention):
    expected = reference(sources[name], input_ids=torch.tensor([PROMPT]))
    model_dir = exports[name, attention]
    engine = Engine(model_dir, Manifest.load(model_dir), provider="cpu", max_context=64)
    got = np.concatenate([engine.logits(PROMPT[:9], 9), engine.logits(PROMPT[9:10], 1), engine.logits(PROMPT[10:], 5)])
    assert np.abs(got - expected).max() < BOUNDS["fp32"] * max(1.0, np.abs(expected).max())
    verification = Manifest.load(model_dir).verification
    assert 0 < verification["max_abs_logit_diff"] < BOUNDS["fp32"] * verification["max_abs_reference_logit"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_greedy_tokens_equal_transformers_and_every_mode_equals_ar(sources, exports, name):
    src = sources[name]
    spec = read_model_spec(src)
    with torch.no_grad():
        generated = load_reference(src, spec).generate(torch.tensor([PROMPT[:6]]), do_sample=False,
                                                       max_new_tokens=20, min_new_tokens=20)
    expected = generated[0, 6:].tolist()
    model = load(exports[name, "gqa"], provider="cpu", max_context=64)
    ar = model.generate(PROMPT[:6], mode="ar", max_new_tokens=20)
    assert ar.token_ids == expected[:len(ar.token_ids)] and len(ar.token_ids) >= 5
    for options in ({"mode": "verify"}, {"mode": "verify", "block_size": 4}, {"threshold": 1.0, "block_size": 4}):
        assert model.generate(PROMPT[:6], max_new_tokens=20, **options).token_ids == ar.token_ids, options


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_fp16_and_int8_exports_pass_their_bounds(sources, tmp_path, name):
    for dtype in ("fp16", "int8"):
        manifest = export_model(sources[name], tmp_path / dtype, dtype=dtype, quiet=True)
        verification = manifest.verification
        assert verification["max_abs_logit_diff"] < BOUNDS[dtype] * max(1, verification["max_abs_reference_logit"])
    assert "unquantized_max_abs_logit_diff" in verification


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_latent_inputs_are_input_embeddings(sources, tmp_path, name):
    """Latent vectors take positions' input embeddings, as inputs_embeds does in transformers."""
    src = sources[name]
    export_model(src, tmp_path / "latent", latent_inputs=True, verify=False, quiet=True)
    vectors = np.random.default_rng(3).normal(0, 1, (2, read_model_spec(src).hidden_size)).astype(np.float32)
    reference_model = load_reference(src, read_model_spec(src))
    with torch.no_grad():
        embeds = reference_model.get_input_embeddings()(torch.tensor([PROMPT[:8]]))
        embeds[0, 2], embeds[0, 5] = torch.from_numpy(vectors[0]), torch.from_numpy(vectors[1])
        expected = reference_model(inputs_embeds=embeds).logits[0].numpy()
    engine = Engine(tmp_path / "latent", Manifest.load(tmp_path / "latent"), provider="cpu", max_context=64)
    items = [*PROMPT[:2], Latent(vectors[0]), *PROMPT[3:5], Latent(vectors[1]), *PROMPT[6:8]]
    got = engine.logits(items, 8)
    assert np.abs(got - expected).max() < BOUNDS["fp32"] * max(1.0, np.abs(expected).max())


def test_longrope_holds_to_the_original_context(tmp_path):
    """Phi-3's longrope: the short factors serve up to original_max_position_embeddings; beyond it the export
    is refused rather than wrong."""
    factors = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]
    src = save_model(tmp_path / "src", arch="phi3", seed=5, max_position_embeddings=256,
                     original_max_position_embeddings=64, rope_parameters={
                         "rope_type": "longrope", "rope_theta": 10000.0, "short_factor": factors,
                         "long_factor": [2 * f for f in factors], "original_max_position_embeddings": 64})
    with pytest.raises(ExportError, match="export with --max-context 64 or less"):
        export_model(src, tmp_path / "out", quiet=True)
    manifest = export_model(src, tmp_path / "out", max_context=64, quiet=True)  # verified by the gate
    assert manifest.verification["max_abs_logit_diff"] < BOUNDS["fp32"] * manifest.verification[
        "max_abs_reference_logit"]


def test_a_graph_that_computes_another_model_fails_the_export(sources, tmp_path, monkeypatch, capsys):
    """The verification gate: a builder bug (here, the MLP's activation left out) must not print 'verified'."""
    import edgegen.export.graph as graph

    monkeypatch.setattr(graph, "activation", lambda g, spec, x, standard: x)
    with pytest.raises(ExportError, match="verification failed: the fp32 graph's logits differ"):
        export_model(sources["qwen3"], tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    export_model(sources["qwen3"], tmp_path / "out", verify=False)
    assert "--no-verify: the graph is not checked" in capsys.readouterr().err


def test_node_names_say_layer_and_role(exports):
    import onnx

    names = [node.name for node in onnx.load(exports["gemma2", "gqa"] / "model.onnx").graph.node]
    assert any(n.startswith("/model/layers.1/attn/GroupQueryAttention") for n in names)
    assert any(n.startswith("/model/layers.0/mlp/FastGelu") for n in names)
    assert len(set(names)) == len(names)
