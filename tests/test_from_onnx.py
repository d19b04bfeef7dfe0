"""examples/default_model/from_onnx.py: the bundled models written back out as the checkpoints they came from."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgegen import load
from edgegen.export import export_model
from edgegen.models import DEFAULT_MODEL, RAG_GENERATOR

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "default_model" / "from_onnx.py"


def weights(graph: Path) -> dict[str, np.ndarray]:
    """The graph's named weights (the exporter's numbered constants left out)."""
    return {init.name: numpy_helper.to_array(init) for init in onnx.load(graph).graph.initializer
            if not init.name.startswith("const")}


@pytest.mark.parametrize("bundled, latent_inputs", [(DEFAULT_MODEL, False), (RAG_GENERATOR, True)])
def test_checkpoint_exports_back_to_the_same_graph(bundled, latent_inputs, tmp_path):
    subprocess.run([sys.executable, SCRIPT, tmp_path / "hf", "--model", bundled], check=True, capture_output=True)
    export_model(tmp_path / "hf", tmp_path / "onnx", latent_inputs=latent_inputs, quiet=True)  # verifies vs torch
    before, after = weights(bundled / "model.onnx"), weights(tmp_path / "onnx" / "model.onnx")
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[name], after[name]) for name in before)
    original, rebuilt = load(bundled, provider="cpu"), load(tmp_path / "onnx", provider="cpu")
    assert rebuilt.manifest.block_size == original.manifest.block_size
    messages = [{"role": "user", "content": "Write 42 in words."}]
    assert (rebuilt.generate(messages, chat=True, max_new_tokens=16).token_ids
            == original.generate(messages, chat=True, max_new_tokens=16).token_ids)


def test_refuses_a_graph_it_cannot_read(tmp_path, checkpoints):
    export_model(checkpoints["llama"], tmp_path / "llama", quiet=True)
    done = subprocess.run([sys.executable, SCRIPT, tmp_path / "hf", "--model", tmp_path / "llama"],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "fp32 qwen2 exports" in done.stderr
    missing = subprocess.run([sys.executable, SCRIPT, tmp_path / "hf", "--model", tmp_path / "none"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "edgegen export" in missing.stderr
