"""Quantized exports (int8 dynamic, int4 MatMulNBits) and the `edgegen bench` command."""
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import onnx
import pytest

from edgegen import EdgegenError, load
from edgegen.bench import parse_config, print_table
from edgegen.export import export_model

QUANTIZED_OPS = {"int8": "MatMulInteger", "int4": "MatMulNBits"}


@pytest.fixture(scope="module")
def quantized(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    return {dtype: export_model(checkpoints["mars"], root / dtype, dtype=dtype, quiet=True) and root / dtype
            for dtype in QUANTIZED_OPS}


def dequantized_head(weights: dict, dtype: str) -> np.ndarray:
    """The LM head's quantized weights back in floats, [vocab, hidden], as the quantizers define them."""
    if dtype == "int8":
        q = weights["lm_head.weight_T_quantized"].astype(np.float32) - weights["lm_head.weight_T_zero_point"]
        return (q * weights["lm_head.weight_T_scale"]).T
    packed, scales = weights["lm_head.weight_T_Q4"], weights["lm_head.weight_T_scales"]
    nibbles = np.stack([packed & 15, packed >> 4], -1).reshape(packed.shape[0], -1).astype(np.float32)
    return (nibbles - 8) * np.repeat(scales, 32, axis=1)  # symmetric: zero point 8


@pytest.mark.parametrize("dtype", QUANTIZED_OPS)
def test_a_tied_models_embeddings_are_the_quantized_head_rows(quantized, dtype):
    """No fp16 table beside the quantized head: the embedding nodes read the head's own weights, exactly."""
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(quantized[dtype] / "model.onnx"))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert "model.embed_tokens.weight" not in weights
    nodes = [node for node in model.graph.node if node.name.startswith("/model/embed_tokens/")]
    used = [model.graph.initializer[i] for i, t in enumerate(model.graph.initializer)
            if any(t.name in node.input for node in nodes)]
    graph = helper.make_graph(nodes, "embeddings", [helper.make_tensor_value_info("input_ids", 7, [1, None])],
                              [helper.make_tensor_value_info(nodes[-1].output[0], 1, None)], used)
    alone = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    ids = np.array([[0, 5, 100, 511]])
    rows = ort.InferenceSession(alone.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids})[0]
    np.testing.assert_allclose(rows[0], dequantized_head(weights, dtype)[ids[0]], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", QUANTIZED_OPS)
def test_quantized_export_rewrites_every_matmul_and_runs(quantized, exported, dtype):
    ops = Counter(node.op_type for node in onnx.load(str(quantized[dtype] / "model.onnx")).graph.node)
    fp32_ops = Counter(node.op_type for node in onnx.load(str(exported["mars"] / "model.onnx")).graph.node)
    assert ops[QUANTIZED_OPS[dtype]] == fp32_ops["MatMul"] + fp32_ops["FusedMatMul"]  # the LM head included
    assert ops["MatMul"] == ops["FusedMatMul"] == 0
    if dtype == "int4":  # the qkv biases went into MatMulNBits' own bias input
        assert ops["Add"] == 0
    model = load(quantized[dtype], provider="cpu", max_context=128)
    assert (model.manifest.weights, model.manifest.dtype) == (dtype, "fp32")
    verification = model.manifest.verification
    assert verification["max_abs_logit_diff"] > 0  # it is measured, not assumed
    result = model.generate("import json", max_new_tokens=8, mode="verify")
    reference = load(exported["mars"], provider="cpu", max_context=128)
    assert len(result.token_ids) == 8 and result.stop_reason == "max_new_tokens"
    if dtype == "int8":  # 8-bit weights stay close to fp32: the tolerance the README reports
        assert verification["max_abs_logit_diff"] < 0.15 * verification["max_abs_reference_logit"]
        ids = model.encode_prompt("import json")
        reference.engine.rewind(0)
        model.engine.rewind(0)
        exact, quantized_logits = reference.engine.logits(ids, 1)[0].copy(), model.engine.logits(ids, 1)[0]
        error = np.abs(exact - quantized_logits).max()
        assert error < 0.15 * np.abs(exact).max()
        # the first token is fp32's, or one that fp32 ranks within the quantization error of it
        assert exact.max() - exact[result.token_ids[0]] <= 2 * error


def test_manifest_cost_curve_is_used_on_the_same_machine(quantized):
    model = load(quantized["int8"], provider="cpu", max_context=128)
    recorded = model.manifest.cost_curve
    assert recorded["sizes"][0] == 1 and len(recorded["seconds"]) == len(recorded["sizes"])
    assert model.cost_curve.seconds == recorded["seconds"]  # threads=None on both sides: no re-measurement
    other = load(quantized["int8"], provider="cpu", max_context=128, threads=1)
    assert other.cost_curve.seconds != recorded["seconds"]  # another thread count measures its own


def test_parse_config():
    assert parse_config("ar").options == {"mode": "ar"}
    assert parse_config("threshold:0.8@auto").options == {"mode": "threshold", "threshold": 0.8, "block_size": "auto"}
    assert parse_config("verify@4").options == {"mode": "verify", "block_size": 4}
    assert parse_config("verify:lookup@4").options == {"mode": "verify", "drafts": "lookup", "block_size": 4}
    for bad in ("fast", "verify:0.9", "threshold:x", "ar@many"):
        with pytest.raises(EdgegenError, match="bad configuration"):
            parse_config(bad)


def test_bench_command_json_and_plot(exported, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("import json\nclass A:\n")
    run = subprocess.run([sys.executable, "-m", "edgegen", "bench", str(exported["mars"]), "--prompts", str(prompts),
                          "--configs", "ar", "threshold:0.5@4", "--repeat", "2", "--warmup", "1",
                          "--max-new-tokens", "8", "--json", "--plot", str(tmp_path / "b.png")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = {r["config"]: r for r in json.loads(run.stdout)["results"]}
    assert set(results) == {"ar", "threshold:0.5@4"}
    assert json.loads(run.stdout)["settings"]["kv_cache_bytes"] == load(exported["mars"]).engine.kv_bytes
    assert all(r["runs"] == 4 and r["decode_tokens_per_s"] > 0 and r["step_ms_p99"] >= r["step_ms_p50"] > 0
               for r in results.values())
    assert results["ar"]["tokens_per_forward"] == 1.0  # the end-of-sequence token counts: it took a forward
    assert (tmp_path / "b.png").stat().st_size > 0


def test_bench_compare_needs_a_genai_model(exported):
    run = subprocess.run([sys.executable, "-m", "edgegen", "bench", str(exported["mars"]), "--compare",
                          "onnxruntime-genai"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "--genai-model" in run.stderr and "Traceback" not in run.stderr


def test_bench_against_genai_ar_and_ngram_on_the_same_weights(checkpoints, exported, tmp_path):
    """genai's builder makes its own model from the same checkpoint; bench runs its AR and its n-gram
    speculation beside edgegen's configurations and compares outputs with AR's."""
    genai_dir = tmp_path / "genai"
    build = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(checkpoints["llama"]),
                            "-o", str(genai_dir), "-p", "fp32", "-e", "cpu", "-c", str(tmp_path / "cache")],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("x = x + 1\nx = x + 1\nx =\nimport json\nimport json\nimport\n")
    run = subprocess.run([sys.executable, "-m", "edgegen", "bench", str(exported["llama"]), "--prompts", str(prompts),
                          "--raw", "--configs", "ar", "verify", "--repeat", "1", "--warmup", "0", "--max-new-tokens",
                          "24", "--compare", "onnxruntime-genai", "--genai-model", str(genai_dir), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = {r["config"]: r for r in json.loads(run.stdout)["results"]}
    assert set(results) == {"ar", "verify", "onnxruntime-genai ar", "onnxruntime-genai ngram"}
    assert all(r["same_as_ar"] == r["prompts"] == 6 for r in results.values())  # fp32, same weights: same text
    assert results["verify"]["drafts_proposed"]["lookup"] > 0 and results["onnxruntime-genai ngram"]["drafts_proposed"]
    assert "best edgegen (" in run.stderr and "best onnxruntime-genai (" in run.stderr


def test_cached_cost_curves_tell_precisions_apart(quantized, exported, tmp_path, monkeypatch):
    """An int8 graph of the same weights costs differently from the fp32 one: each gets its own curve."""
    monkeypatch.setenv("EDGEGEN_CACHE", str(tmp_path))
    for model_dir in (exported["mars"], quantized["int8"]):
        assert load(model_dir, provider="cpu", max_context=128, threads=1).cost_curve.seconds
    assert len(json.loads((tmp_path / "cost_curves.json").read_text())) == 2


def test_a_quantized_export_prints_its_stages_not_the_quantizers_log(checkpoints, tmp_path):
    run = subprocess.run([sys.executable, "-m", "edgegen", "export", str(checkpoints["mars"]), str(tmp_path / "q"),
                          "--dtype", "int4", "--no-verify"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "[INFO]" not in run.stderr and "quantized the MatMul weights to int4" in run.stderr


def test_the_bench_table_lines_up(capsys):
    summary = {"config": "verify", "ttft_ms_p50": 2.6789, "prefill_tokens_per_s": 12321.456, "runs": 1,
               "decode_tokens_per_s": 1535.123, "tokens_per_forward": 1.4567, "draft_acceptance": {"mask": 0.49},
               "step_ms_p50": 0.5912, "step_ms_p99": 1.21, "peak_rss_mb": 116.8, "same_as_ar": 8, "prompts": 8}
    print_table([summary, {**summary, "config": "ar", "draft_acceptance": {}, "same_as_ar": None}])
    lines = capsys.readouterr().out.splitlines()
    assert len({len(line) for line in lines}) == 1 and len(lines) == 4
    assert " 12321 |" in lines[2] and " 2.7 |" in lines[2] and "12321.46" not in lines[2]
