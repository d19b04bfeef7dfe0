"""The `edgegen` command as a user runs it, and the runtime on a device without torch or transformers."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def edgegen(*args, module=False):
    entry = ["-m", "edgegen"] if module else ["-c", "from edgegen.cli import main; raise SystemExit(main())"]
    command = [sys.executable, *entry]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=300)


def test_export_then_generate_json(checkpoints, tmp_path):
    out = tmp_path / "model"
    export = edgegen("export", checkpoints["mars"], out, "--dtype", "fp16", "--max-context", "128")
    assert export.returncode == 0, export.stderr
    assert "[4/4] verified against transformers" in export.stderr
    run = edgegen("generate", out, "--prompt", "def load(fp):", "--max-new-tokens", "12", "--block-size", "4",
                  "--threshold", "0.05", "--json", "--provider", "cpu", module=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)  # exactly one JSON object, nothing else on stdout
    assert set(result) == {"text", "token_ids", "prompt_tokens", "new_tokens", "decoded_tokens", "forwards",
                           "tokens_per_forward",
                           "ttft_ms", "decode_tokens_per_s", "stop_reason", "mode", "drafts_proposed",
                           "drafts_accepted", "drafts_by_source"}
    assert result["mode"] == "threshold"
    assert result["new_tokens"] == len(result["token_ids"]) <= 12
    assert result["decoded_tokens"] == result["new_tokens"] + (result["stop_reason"] == "eos")
    assert result["tokens_per_forward"] == pytest.approx(result["decoded_tokens"] / result["forwards"])


def test_generate_verify_mode_reports_drafts(exported):
    run = edgegen("generate", exported["mars"], "--prompt", "x = [1, 2,", "--max-new-tokens", "16", "--mode", "verify",
                  "--block-size", "4", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["mode"] == "verify" and result["drafts_proposed"] >= result["drafts_accepted"] >= 0
    assert result["drafts_proposed"] > 0


def test_generate_streams_text_and_stats(exported, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("class Encoder:", encoding="utf-8")
    run = edgegen("generate", exported["mars"], "--prompt-file", prompt_file, "--chat", "--max-new-tokens", "8",
                  "--stop", "zz")
    assert run.returncode == 0, run.stderr
    assert "tokens/forward" in run.stderr and "TTFT" in run.stderr


@pytest.mark.parametrize("args, message", [
    (["generate", "/nonexistent/model", "--prompt", "hi"], "not an edgegen model directory"),
    (["generate", "{model}", "--prompt-file", "/nonexistent.txt"], "cannot read --prompt-file"),
    (["generate", "{model}", "--prompt", "hi", "--provider", "cuda"], "not available"),
    (["generate", "{model}", "--prompt", "hi", "--threshold", "2"], "threshold"),
    (["export", "/nonexistent/ckpt", "{tmp}/out"], "does not exist"),
])
def test_errors_go_to_stderr_with_nonzero_exit(exported, tmp_path, args, message):
    run = edgegen(*[a.format(model=exported["mars"], tmp=tmp_path) for a in args])
    assert run.returncode == 1
    assert message in run.stderr and run.stdout == ""
    assert "Traceback" not in run.stderr


def test_runtime_runs_without_torch_or_transformers(exported):
    """The device side must import and generate with numpy, onnxruntime, tokenizers and jinja2 only."""
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "optimum", "onnx", "safetensors"):
                    raise ImportError("blocked on the device: " + name)
        sys.meta_path.insert(0, Block())
        import edgegen
        model = edgegen.load({str(exported["mars"])!r}, provider="cpu")
        result = model.generate("def load(fp):", max_new_tokens=10, block_size=4, threshold=0.05)
        chat = model.chat()
        chat.send("hi", max_new_tokens=4)
        assert result.stats.new_tokens > 0
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "onnx")]
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_workstation_commands_on_a_device_install_name_the_missing_extra(tmp_path):
    script = textwrap.dedent("""
        import sys
        class Block:  # a device install: no torch, transformers or onnx
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "onnx"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])
        sys.meta_path.insert(0, Block())
        from edgegen.cli import main
        raise SystemExit(main(sys.argv[1:]))
    """)
    for command in (["export", str(tmp_path), str(tmp_path / "out")], ["train", "init", str(tmp_path), "x"]):
        run = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and "Traceback" not in run.stderr
        assert "which a device install leaves out: pip install -e '.[export,train]'" in run.stderr


def test_progress_off_a_terminal_is_a_line_every_nth_update_and_the_last(capsys):
    from edgegen.status import StatusLine

    line = StatusLine(every=3)
    for step in range(1, 8):
        line.show(f"step {step}", last=step == 7)
    assert capsys.readouterr().err.splitlines() == ["step 3", "step 6", "step 7"]


def test_version_and_the_python_example_on_the_bundled_model(tmp_path):
    import edgegen as package

    version = subprocess.run([sys.executable, "-m", "edgegen", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"edgegen {package.__version__}"
    example = subprocess.run([sys.executable, "examples/python_api.py"], capture_output=True, text=True, check=False,
                             cwd=str(Path(__file__).resolve().parent.parent), timeout=300)
    assert example.returncode == 0, example.stderr
    lines = example.stdout.splitlines()
    assert lines[0] == "thirty-one thousand four hundred fifteen" and all(line.strip() for line in lines)


def test_chat_history_goes_to_the_cache_directory_not_home(tmp_path):
    environment = {**os.environ, "HOME": str(tmp_path / "home"), "EDGEGEN_CACHE": str(tmp_path / "cache")}
    environment.pop("EDGEGEN_HISTORY", None)
    run = subprocess.run([sys.executable, "-m", "edgegen", "chat"], input="/help\n/quit\n", capture_output=True,
                         text=True, check=False, env=environment, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "cache" / "chat_history").is_file() and not (tmp_path / "home" / ".edgegen_history").exists()
