"""Damaged model files, bad input files, broken pipes: each a clear error (or a warning and a skip), never a
traceback."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from edgegen import EdgegenError, load
from edgegen.export import export_model


@pytest.fixture
def model_copy(exported, tmp_path):
    return shutil.copytree(exported["mars"], tmp_path / "model")


def edgegen(*args, stdin=None, stdout=subprocess.PIPE):
    return subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], input=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, check=False, timeout=300)


def rewrite_manifest(model_dir, change) -> None:
    path = model_dir / "edgegen.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


@pytest.mark.parametrize("damage,message", [
    (lambda m: m.joinpath("edgegen.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    (lambda m: m.joinpath("edgegen.json").write_bytes(b'{"a": "\xff\xfe"}'), "is not UTF-8 text .byte 7"),
    (lambda m: rewrite_manifest(m, lambda d: {**d, "num_layers": "2"}), "wrong type for num_layers"),
    (lambda m: rewrite_manifest(m, lambda d: {**d, "eos_token_ids": [2, "x"]}), "wrong type for eos_token_ids"),
    (lambda m: rewrite_manifest(m, lambda d: {**d, "graph": [1]}), "does not match the edgegen manifest format"),
    (lambda m: rewrite_manifest(m, lambda d: {**d, "graph": {**d["graph"], "file": "../../elsewhere/model.onnx"}}),
     "names a graph outside the model directory"),
    (lambda m: m.joinpath("tokenizer.json").write_text("{not json"), "tokenizer.json is not a readable tokenizer"),
    (lambda m: m.joinpath("tokenizer.json").unlink(), "missing file .*tokenizer.json"),
    (lambda m: m.joinpath("tokenizer_config.json").write_text("{,}"), "tokenizer_config.json is not valid JSON"),
    (lambda m: os.truncate(m / "model.onnx", 1000), "model.onnx could not be loaded .* re-export"),
    (lambda m: m.joinpath("model.onnx").unlink(), "missing file .*model.onnx"),
])
def test_a_damaged_model_directory_is_a_clear_error(model_copy, damage, message):
    damage(model_copy)
    with pytest.raises(EdgegenError, match=message):
        load(model_copy, provider="cpu", max_context=64)
    run = edgegen("generate", model_copy, "--prompt", "x", "--max-new-tokens", "2")
    assert run.returncode == 1 and "Traceback" not in run.stderr and run.stderr.startswith("edgegen: error:")


def test_a_chat_template_that_does_not_compile_breaks_only_chat(model_copy):
    (model_copy / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")
    model = load(model_copy, provider="cpu", max_context=64)
    assert model.generate("x = 1", max_new_tokens=3).stats.new_tokens > 0
    with pytest.raises(EdgegenError, match="chat template does not compile"):
        model.chat().send("hello")


def test_a_non_utf8_prompt_file_names_the_byte(model_copy, tmp_path):
    (tmp_path / "prompt.txt").write_bytes(b"def f():\n    return '\xe9'\n")
    run = edgegen("generate", model_copy, "--prompt-file", tmp_path / "prompt.txt")
    assert run.returncode == 1 and "prompt.txt is not UTF-8 text (byte 21" in run.stderr


def test_a_damaged_cost_curve_cache_is_ignored_and_rebuilt(model_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEGEN_CACHE", str(tmp_path / "cache"))
    for damage in (b"\xff\xfe", b"[1, 2]", b'{"k": {"sizes": [1], "seconds": "x"}}'):
        (tmp_path / "cache").mkdir(exist_ok=True)
        (tmp_path / "cache" / "cost_curves.json").write_bytes(damage)
        model = load(model_copy, provider="cpu", max_context=64)
        model.manifest.cost_curve = {}  # as for a model exported on another machine
        assert model.generate("x = 1", max_new_tokens=4, block_size="auto").stats.new_tokens > 0
        assert isinstance(json.loads((tmp_path / "cache" / "cost_curves.json").read_text()), dict)


def test_export_refuses_a_negative_block_size_and_clears_what_killed_exports_left(checkpoints, tmp_path):
    with pytest.raises(EdgegenError, match="--block-size must be at least 2"):
        export_model(checkpoints["mars"], tmp_path / "out", block_size=-1, quiet=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / f".out.partial-{dead}").mkdir()
    (tmp_path / f".other.partial-{dead}").mkdir()
    export_model(checkpoints["mars"], tmp_path / "out", quiet=True, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.partial-{dead}", "out"]


def test_broken_pipes_and_a_full_disk_end_quietly(model_copy):
    reader = subprocess.Popen([sys.executable, "-m", "edgegen", "generate", str(model_copy), "--prompt", "x = 1",
                               "--max-new-tokens", "200", "--block-size", "1"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    reader.stdout.read(1)
    reader.stdout.close()  # like `| head -c1`
    assert reader.wait(timeout=120) in (0, 141) and "Traceback" not in reader.stderr.read()
    with open("/dev/full", "w") as full:
        run = edgegen("generate", model_copy, "--prompt", "x = 1", "--max-new-tokens", "50", stdout=full)
    assert run.returncode == 1 and "No space left on device" in run.stderr and "Traceback" not in run.stderr


def test_a_manifest_promising_more_context_than_the_graph_has_is_a_clear_error(model_copy):
    rewrite_manifest(model_copy, lambda d: {**d, "max_context": 4096})
    model = load(model_copy, provider="cpu", max_context=1024)
    with pytest.raises(EdgegenError, match="onnxruntime failed on .* re-export the model"):
        model.generate(list(range(5, 400)), max_new_tokens=2)


def test_export_checks_the_config_against_the_weights_even_without_verify(checkpoints, tmp_path):
    source = shutil.copytree(checkpoints["mars"], tmp_path / "ckpt")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(EdgegenError, match="config.json says 1 layers, the weights hold layers"):
        export_model(source, tmp_path / "out", verify=False, quiet=True)
    assert not (tmp_path / "out").exists()
