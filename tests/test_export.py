"""Exported graphs against transformers on the same weights, the manifest, and the exporter's errors."""
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgegen.export import ExportError, export_model
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.verify import load_reference
from edgegen.runtime.engine import Engine
from edgegen.runtime.manifest import Manifest

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


def reference_logits(checkpoint, ids):
    model = load_reference(checkpoint, read_model_spec(checkpoint))
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.fixture(scope="module")
def fp16_exports(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("fp16")
    return {name: export_model(checkpoints[name], root / name, dtype="fp16", quiet=True) and root / name
            for name in ("mars", "llama")}


@pytest.fixture(scope="module")
def standard_exports(checkpoints, tmp_path_factory):
    """Graphs with --attention standard: plain ONNX ops, for TensorRT."""
    root = tmp_path_factory.mktemp("standard")
    return {(name, dtype): export_model(checkpoints[name], root / f"{name}-{dtype}", dtype=dtype, quiet=True,
                                        attention="standard") and root / f"{name}-{dtype}"
            for name, dtype in (("mars", "fp32"), ("llama", "fp32"), ("mars", "fp16"))}


def test_all_zero_biases_cost_no_kernel(tmp_path):
    """transformers starts biases at zero; such a bias adds nothing, so the graph has no Add for it."""
    import onnx
    from tiny_models import save_model

    src = save_model(tmp_path / "src", zero_biases=True)
    out = export_model(src, tmp_path / "model", quiet=True) and tmp_path / "model"
    assert not [n for n in onnx.load(out / "model.onnx").graph.node if n.op_type == "Add"]
    ids = list(range(3, 15))
    engine = Engine(out, Manifest.load(out), provider="cpu", max_context=64)
    assert np.abs(engine.logits(ids, len(ids)) - reference_logits(src, ids)).max() < TOLERANCE["fp32"]


@pytest.mark.parametrize("name, dtype", [("mars", "fp32"), ("qwen2_4x", "fp32"), ("llama", "fp32"),
                                         ("bf16_sharded", "fp32"), ("mars", "fp16"), ("llama", "fp16")])
def test_engine_logits_match_transformers(name, dtype, checkpoints, exported, fp16_exports):
    """Prefill 9 tokens, then a cached 1-token step and a cached 5-token step (S > 1 on P > 0)."""
    model_dir = exported[name] if dtype == "fp32" else fp16_exports[name]
    ids = np.random.default_rng(7).integers(3, 500, 15).tolist()
    expected = reference_logits(checkpoints[name], ids)
    engine = Engine(model_dir, Manifest.load(model_dir), provider="cpu", max_context=64)
    got = np.concatenate([engine.logits(ids[:9], 9), engine.logits(ids[9:10], 1), engine.logits(ids[10:], 5)])
    assert np.abs(got - expected).max() < TOLERANCE[dtype] * max(1.0, np.abs(expected).max())
    assert engine.tokens == ids


@pytest.mark.parametrize("name, dtype", [("mars", "fp32"), ("llama", "fp32"), ("mars", "fp16")])
def test_standard_attention_graph_matches_transformers_and_gqa(name, dtype, checkpoints, exported, fp16_exports,
                                                               standard_exports):
    """No contrib op left for TensorRT to refuse, and the same logits as the GQA graph and transformers over
    a prefill, a 1-token step and a 5-token step."""
    import onnx

    model_dir = standard_exports[name, dtype]
    assert {n.domain for n in onnx.load(model_dir / "model.onnx").graph.node} == {""}
    assert Manifest.load(model_dir).graph.attention == "standard"
    gqa_dir = exported[name] if dtype == "fp32" else fp16_exports[name]
    ids = np.random.default_rng(11).integers(3, 500, 15).tolist()
    expected = reference_logits(checkpoints[name], ids)
    rows = {}
    for label, directory in (("standard", model_dir), ("gqa", gqa_dir)):
        engine = Engine(directory, Manifest.load(directory), provider="cpu", max_context=64)
        rows[label] = np.concatenate([engine.logits(ids[:9], 9), engine.logits(ids[9:10], 1),
                                      engine.logits(ids[10:], 5)])
    scale = max(1.0, np.abs(expected).max())
    assert np.abs(rows["standard"] - expected).max() < TOLERANCE[dtype] * scale
    assert np.abs(rows["standard"] - rows["gqa"]).max() < TOLERANCE[dtype] * scale


def test_standard_attention_generates_what_gqa_generates(exported, standard_exports):
    from edgegen import load

    models = [load(d, provider="cpu", max_context=128) for d in (exported["mars"], standard_exports["mars", "fp32"])]
    for mode in ("ar", "verify"):
        texts = [m.generate("def add(a, b):", mode=mode, max_new_tokens=24).token_ids for m in models]
        assert texts[0] == texts[1]


def test_graph_contract_with_growing_past(checkpoints, exported):
    """The plain onnxruntime contract: past KV [B, KV, P, D] in, present [B, KV, P+S, D] out."""
    manifest, model_dir = Manifest.load(exported["mars"]), exported["mars"]
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert "position_ids" not in {i.name for i in session.get_inputs()} and manifest.graph.position_ids is None
    ids = list(range(20, 32))
    expected = reference_logits(checkpoints["mars"], ids)
    empty = np.zeros((1, manifest.num_kv_heads, 0, manifest.head_dim), np.float32)
    past = [empty] * (2 * manifest.num_layers)
    rows, start = [], 0
    for count in (7, 5):
        feeds = {"input_ids": np.array([ids[start:start + count]]),  # positions come from the mask, as in genai
                 "attention_mask": np.ones((1, start + count), np.int64), "logits_to_keep": np.array(count)}
        for layer in range(manifest.num_layers):
            feeds[f"past_key_values.{layer}.key"] = past[2 * layer]
            feeds[f"past_key_values.{layer}.value"] = past[2 * layer + 1]
        logits, *past = session.run(None, feeds)
        assert past[0].shape == (1, manifest.num_kv_heads, start + count, manifest.head_dim)
        rows.append(logits[0])
        start += count
    np.testing.assert_allclose(np.concatenate(rows), expected, atol=1e-4)


def test_manifest_records_the_model(exported, checkpoints):
    manifest = Manifest.load(exported["mars"])
    config = json.loads((checkpoints["mars"] / "config.json").read_text())
    assert manifest.architecture == "qwen2" and manifest.source["model_type"] == "a2d-qwen2"
    assert (manifest.num_layers, manifest.hidden_size, manifest.vocab_size) == \
        (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"])
    assert manifest.mask_token_id == 3 and manifest.block_size == 4
    assert manifest.eos_token_ids == [2] and manifest.pad_token_id == 0
    assert manifest.max_context == 256 and manifest.dtype == "fp32"
    assert len(manifest.source["weights_sha256"]) == 64
    assert manifest.verification["max_abs_logit_diff"] < 1e-4
    for name in ("model.onnx", "tokenizer.json", "tokenizer_config.json", "edgegen.json"):
        assert (exported["mars"] / name).is_file()


def test_model_without_mask_token_is_ar_only(exported):
    assert Manifest.load(exported["llama"]).mask_token_id is None


def test_block_size_from_model_name(checkpoints, tmp_path):
    src = tmp_path / "MARS-Tiny-blk8"
    shutil.copytree(checkpoints["qwen2_4x"], src)
    assert export_model(src, tmp_path / "out", verify=False, quiet=True).block_size == 8
    assert export_model(src, tmp_path / "out2", block_size=2, verify=False, quiet=True).block_size == 2


def copy_checkpoint(checkpoints, tmp_path, name="mars"):
    return shutil.copytree(checkpoints[name], tmp_path / "src")


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json", "model.safetensors"])
def test_missing_file_is_named(checkpoints, tmp_path, missing):
    src = copy_checkpoint(checkpoints, tmp_path)
    (src / missing).unlink()
    with pytest.raises(ExportError, match=f"missing file .*{missing}"):
        export_model(src, tmp_path / "out", quiet=True)


def test_missing_shard_is_named(checkpoints, tmp_path):
    src = copy_checkpoint(checkpoints, tmp_path, "bf16_sharded")
    shard = sorted(src.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ExportError, match=f"missing file .*{shard.name}.*incomplete"):
        export_model(src, tmp_path / "out", quiet=True)


def test_unsupported_model_type_lists_supported(checkpoints, tmp_path):
    src = copy_checkpoint(checkpoints, tmp_path)
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    supported = "a2d-qwen2, a2d-qwen3, gemma2, gemma3_text, llama, mistral, phi3, qwen2, qwen3"
    with pytest.raises(ExportError, match=f"unsupported model_type .gpt2.*{supported}"):
        export_model(src, tmp_path / "out", quiet=True)


@pytest.mark.parametrize("keep", [4, 100, -64])
def test_truncated_safetensors_is_reported(checkpoints, tmp_path, keep):
    src = copy_checkpoint(checkpoints, tmp_path)
    data = (src / "model.safetensors").read_bytes()
    (src / "model.safetensors").write_bytes(data[:keep])
    with pytest.raises(ExportError, match="(corrupt|incomplete|truncated).*model.safetensors"):
        export_model(src, tmp_path / "out", quiet=True)


def test_existing_output_needs_force_and_is_kept_on_refusal(checkpoints, tmp_path):
    out = tmp_path / "out"
    export_model(checkpoints["mars"], out, verify=False, quiet=True)
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_model(checkpoints["mars"], out, verify=False, quiet=True)
    export_model(checkpoints["qwen2_4x"], out, force=True, verify=False, quiet=True)
    assert Manifest.load(out).source["path"].endswith("qwen2-4x")
    assert not list(tmp_path.glob(".out.*")), "no staging directory is left behind"


def test_force_never_replaces_a_foreign_directory(checkpoints, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an edgegen model directory"):
        export_model(checkpoints["mars"], out, force=True, quiet=True)
    assert (out / "notes.txt").read_text() == "mine"


def test_failed_export_keeps_the_previous_one(checkpoints, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_model(checkpoints["mars"], out, verify=False, quiet=True)
    before = (out / "edgegen.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("edgegen.export.exporter.save_graph", broken)
    with pytest.raises(RuntimeError):
        export_model(checkpoints["mars"], out, force=True, verify=False, quiet=True)
    assert (out / "edgegen.json").read_text() == before
    assert not list(tmp_path.glob(".out.*"))
