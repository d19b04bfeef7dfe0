"""The `edgegen train` recipe end to end on tiny data: tokenizer -> init -> ar -> mars -> export -> generate."""
import json
import subprocess
import sys

import pytest

from edgegen import load


def edgegen(*args):
    run = subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def chat_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rows = [{"messages": [{"role": "user", "content": f"Write {n} twice."},
                          {"role": "assistant", "content": f"{n} {n}"}]} for n in range(40)]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "text.jsonl").write_text(json.dumps({"text": "def f(x):\n    return x + 1\n" * 50}) + "\n")
    return root


def test_recipe_from_nothing_to_a_running_mars_model(chat_data, tmp_path):
    edgegen("train", "tokenizer", tmp_path / "tok", chat_data / "text.jsonl", chat_data / "chat.jsonl",
            "--vocab-size", "300")
    edgegen("train", "init", tmp_path / "tok", tmp_path / "init", "--hidden-size", "64", "--layers", "2",
            "--heads", "4", "--kv-heads", "2", "--intermediate-size", "128", "--max-position-embeddings", "256")
    ar = edgegen("train", "ar", tmp_path / "init", chat_data / "text.jsonl", tmp_path / "pre", "--steps", "3",
                 "--max-length", "64", "--batch-size", "2")
    assert "step 3/3" in ar.stderr and "tok/s" in ar.stderr and "ETA" in ar.stderr
    edgegen("train", "mars", tmp_path / "pre", chat_data / "chat.jsonl", tmp_path / "mars", "--block-size", "4",
            "--steps", "3", "--batch-size", "4")
    config = json.loads((tmp_path / "mars" / "config.json").read_text())
    assert config["model_type"] == "a2d-qwen2" and config["block_size"] == 4
    assert len((tmp_path / "mars" / "train_log.jsonl").read_text().splitlines()) == 3
    edgegen("export", tmp_path / "mars", tmp_path / "onnx")
    model = load(tmp_path / "onnx", provider="cpu")
    assert model.manifest.block_size == 4 and model.manifest.mask_token_id is not None
    assert model.chat().send("Write 3 twice.", max_new_tokens=5, mode="verify").stats.forwards >= 1


def test_mars_adds_a_mask_token_and_grows_the_embedding(checkpoints, chat_data, tmp_path):
    """The llama test model's tokenizer has no <|mask|> and its vocabulary has no spare row."""
    edgegen("train", "mars", checkpoints["llama"], chat_data / "chat.jsonl", tmp_path / "mars", "--block-size", "2",
            "--steps", "2", "--batch-size", "4")
    tokenizer_config = json.loads((tmp_path / "mars" / "tokenizer_config.json").read_text())
    config = json.loads((tmp_path / "mars" / "config.json").read_text())
    assert tokenizer_config["mask_token"] == "<|mask|>"
    assert config["model_type"] == "llama" and config["vocab_size"] == 576  # 512 + 1, padded to a multiple of 64
    edgegen("export", tmp_path / "mars", tmp_path / "onnx")
    assert load(tmp_path / "onnx", provider="cpu").manifest.mask_token_id == 512


def test_mars_on_a_qwen3_base_writes_the_a2d_qwen3_release(chat_data, tmp_path):
    from tiny_models import save_model

    base = save_model(tmp_path / "qwen3", arch="qwen3", seed=8)
    edgegen("train", "mars", base, chat_data / "chat.jsonl", tmp_path / "mars", "--block-size", "3",
            "--steps", "2", "--batch-size", "4")
    config = json.loads((tmp_path / "mars" / "config.json").read_text())
    assert (config["model_type"], config["architectures"], config["block_size"]) == \
        ("a2d-qwen3", ["A2DQwen3LMHeadModel"], 3)
    edgegen("export", tmp_path / "mars", tmp_path / "onnx")  # verified against transformers' Qwen3
    model = load(tmp_path / "onnx", provider="cpu")
    assert model.manifest.architecture == "qwen3" and model.manifest.block_size == 3
    assert model.generate("def f(x):", max_new_tokens=6, threshold=0.5).stats.forwards >= 1


def test_training_refuses_to_overwrite(checkpoints, chat_data, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    run = subprocess.run([sys.executable, "-m", "edgegen", "train", "ar", str(checkpoints["mars"]),
                          str(chat_data / "chat.jsonl"), str(tmp_path / "out"), "--steps", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "already exists and is not empty" in run.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
