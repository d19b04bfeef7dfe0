"""Decoders exported by optimum, loaded as they are (fixtures/optimum-tiny, made by fixtures/make_optimum_decoder.sh
from the checkpoint in fixtures/optimum-tiny-weights): greedy output against transformers on the same weights."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_decoding import hf_greedy
from transformers import AutoModelForCausalLM

from edgegen import EdgegenError, load
from edgegen.cli import main
from edgegen.runtime.manifest import MANIFEST_NAME, Manifest

FIXTURES = Path(__file__).parent / "fixtures"
OPTIMUM, WEIGHTS = FIXTURES / "optimum-tiny", FIXTURES / "optimum-tiny-weights"
PROMPTS = ["import json\ndef load(fp):", "class Encoder:\n    def __init__(self", "héllo wörld 🎉", "x = [1, 2,"]
LONG_PROMPT = "def f(a, b):\n    return a + b\n" * 6  # over the prompt cache's 32 tokens


@pytest.fixture(scope="module")
def model():
    return load(OPTIMUM, provider="cpu")


@pytest.fixture(scope="module")
def reference():
    return AutoModelForCausalLM.from_pretrained(WEIGHTS, dtype=torch.float32).eval()


def test_manifest_is_inferred_from_graph_and_config(model):
    m = model.manifest
    assert (m.architecture, m.num_layers, m.num_kv_heads, m.head_dim, m.vocab_size, m.dtype) == \
        ("qwen2", 2, 2, 4, 4096, "fp32")
    assert (m.eos_token_ids, m.mask_token_id, m.max_context) == ([2], 3, 256)  # mask token: tokenizer_config's
    assert m.graph.position_ids == "position_ids" and m.graph.logits_to_keep is None
    assert not m.graph.kv_shared_buffer and not (OPTIMUM / MANIFEST_NAME).exists()


def test_ar_equals_transformers_greedy(model, reference):
    for prompt in PROMPTS:
        expected = hf_greedy(reference, model.encode_prompt(prompt), 30)
        assert model.generate(prompt, max_new_tokens=30, mode="ar").token_ids == expected


@pytest.mark.parametrize("options", [{"block_size": 2}, {"block_size": 5}, {"drafts": "lookup", "block_size": 4},
                                     {"drafts": "lookup"}, {}])
def test_verify_equals_ar(model, options):
    proposed = accepted = 0
    for prompt in PROMPTS + [LONG_PROMPT]:
        ar = model.generate(prompt, max_new_tokens=40, mode="ar")
        verified = model.generate(prompt, max_new_tokens=40, mode="verify", **options)
        assert verified.token_ids == ar.token_ids
        proposed, accepted = proposed + verified.stats.drafts_proposed, accepted + verified.stats.drafts_accepted
    assert accepted > 0
    if "block_size" in options:  # a fixed size drafts whatever it can: some drafts are rejected and their KV rewound
        assert proposed > accepted


def test_mask_drafts_and_chat_prefix_reuse(model):
    result = model.generate(PROMPTS[0], max_new_tokens=24, drafts="mask", block_size=4)
    assert result.stats.drafts_by_source["mask"]["proposed"] > 0
    chat = model.chat()
    first = chat.send("x = [1, 2,", max_new_tokens=8, mode="ar")
    second = chat.send("y", max_new_tokens=8, mode="ar")
    assert second.stats.cached_prompt_tokens > first.stats.new_tokens
    assert second.token_ids == model.generate(chat.messages[:-1], max_new_tokens=8, mode="ar").token_ids


def test_prompt_cache_restores_the_kv(model, tmp_path):
    expected = model.generate(LONG_PROMPT, max_new_tokens=20, mode="ar").token_ids
    load(OPTIMUM, provider="cpu", prompt_cache=tmp_path).generate(LONG_PROMPT, max_new_tokens=20, mode="ar")
    restored = load(OPTIMUM, provider="cpu", prompt_cache=tmp_path).generate(LONG_PROMPT, max_new_tokens=20,
                                                                              mode="ar")
    assert restored.stats.cached_prompt_tokens > 0 and restored.token_ids == expected


def test_generate_command_on_the_optimum_directory(model, capsys):
    assert main(["generate", str(OPTIMUM), "--prompt", PROMPTS[3], "--max-new-tokens", "16", "--json",
                 "--provider", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["token_ids"] == model.generate(PROMPTS[3], max_new_tokens=16).token_ids


def test_export_from_onnx_writes_a_manifest(model, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", "--from-onnx", str(OPTIMUM), str(out)]) == 0
    exported = Manifest.load(out)
    assert exported == Manifest.load(OPTIMUM) and json.loads((out / MANIFEST_NAME).read_text())["graph"]["file"] == \
        "model.onnx"
    assert os.path.samefile(out / "model.onnx", OPTIMUM / "model.onnx")  # hard-linked on one filesystem
    for prompt in PROMPTS:
        assert load(out, provider="cpu").generate(prompt, max_new_tokens=30).token_ids == \
            model.generate(prompt, max_new_tokens=30).token_ids
    assert main(["export", "--from-onnx", str(OPTIMUM), str(tmp_path / "other"), "--topk", "4"]) == 1
    assert "drop --topk" in capsys.readouterr().err


def test_onnx_community_layout_loads(model, tmp_path):
    """The graph in onnx/, as the onnx-community repositories keep it."""
    directory = shutil.copytree(OPTIMUM, tmp_path / "model")
    (directory / "onnx").mkdir()
    (directory / "model.onnx").rename(directory / "onnx" / "model.onnx")
    assert load(directory, provider="cpu").generate(PROMPTS[1], max_new_tokens=20).token_ids == \
        model.generate(PROMPTS[1], max_new_tokens=20).token_ids


def edgegen_graph(directory: Path) -> None:
    """An edgegen export's graph, which takes logits_to_keep, in place of optimum's."""
    (directory / "model.onnx").unlink()
    (directory / "model.onnx").symlink_to(Path(__file__).parents[1] / "edgegen/models/default/model.onnx")


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "model.onnx").unlink(), "not an edgegen model directory .*nor an optimum export.*edgegen export"),
    (lambda d: (d / "config.json").unlink(), "has no config.json beside it.*copy the config.json"),
    (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer.json; save the tokenizer"),
    (lambda d: (d / "config.json").write_text('{"model_type": "qwen2"}'), "no whole-number hidden_size, .*vocab_size"),
    (lambda d: (d / "model.onnx").write_bytes(b"not a graph"), "could not be loaded .*optimum-cli export onnx"),
    (edgegen_graph, "inputs edgegen does not feed: logits_to_keep.*optimum-cli export onnx"),
])
def test_bad_directory_is_a_one_line_error(tmp_path, damage, message):
    directory = shutil.copytree(OPTIMUM, tmp_path / "model")
    damage(directory)
    with pytest.raises(EdgegenError, match=message) as error:
        load(directory, provider="cpu")
    assert "\n" not in str(error.value)
