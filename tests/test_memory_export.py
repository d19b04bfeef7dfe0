"""Compressor export against a PyTorch reference on the same weights: LoRA applied as the reference
applies it (an added low-rank path), [MEM] appended, both heads."""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from edgegen import EdgegenError
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.compressor_graph import export_memory
from edgegen.export.verify import load_reference
from edgegen.runtime.compressor import Compressor

RANK, SCALE, RETRIEVAL, GENERATOR = 4, 2.0, 16, 64
TEXTS = ["The Eiffel Tower is in Paris.", "json.loads parses a JSON document.", "x"]


def reference_state(hidden: int, layers: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def rand(*shape, scale=0.1):
        return torch.from_numpy(rng.standard_normal(shape).astype(np.float32) * scale)

    lora = {}
    for adapter in ("compress", "query"):
        lora[adapter] = {}
        for layer in range(layers):
            for module, out in (("q", hidden), ("k", 32), ("v", 32), ("o", hidden)):
                key = f"base_model.model.model.layers.{layer}.self_attn.{module}_proj"
                lora[adapter][f"{key}.lora_A.{adapter}.weight"] = rand(RANK, hidden)
                lora[adapter][f"{key}.lora_B.{adapter}.weight"] = rand(out, RANK)
    mid = (hidden + GENERATOR) // 2
    return {
        "mem_embedding": rand(1, hidden, scale=0.5),
        "retrieval_proj": {"0.weight": rand(RETRIEVAL, hidden), "0.bias": rand(RETRIEVAL),
                           "1.weight": 1 + rand(RETRIEVAL), "1.bias": rand(RETRIEVAL)},
        "cross_proj": {"net.0.weight": rand(mid, hidden), "net.0.bias": rand(mid),
                       "net.2.weight": rand(GENERATOR, mid), "net.2.bias": rand(GENERATOR),
                       "net.3.weight": 1 + rand(GENERATOR), "net.3.bias": rand(GENERATOR)},
        "lora_compress": lora["compress"], "lora_query": lora["query"],
        "config": {"retrieval_dim": RETRIEVAL, "hidden_size": hidden, "generator_hidden": GENERATOR},
    }


@pytest.fixture(scope="module")
def reference_checkpoint(checkpoints, tmp_path_factory):
    """The reference layout: base/ plus a torch.save pickle."""
    root = tmp_path_factory.mktemp("compressor")
    shutil.copytree(checkpoints["qwen2_4x"], root / "base")
    state = reference_state(hidden=64, layers=2)
    torch.save(state, root / "checkpoint.pt")
    return root, state


def reference_outputs(base, state, adapter: str, ids: list[int]):
    model = load_reference(base, read_model_spec(base))
    lora = state[f"lora_{adapter}"]
    for name, module in model.named_modules():
        a_key = f"base_model.model.{name}.lora_A.{adapter}.weight"
        if a_key in lora:
            a, b = lora[a_key], lora[a_key.replace("lora_A", "lora_B")]
            module.register_forward_hook(lambda m, inputs, out, a=a, b=b: out + SCALE * (inputs[0] @ a.T @ b.T))
    with torch.no_grad():
        embeds = torch.cat([model.model.embed_tokens(torch.tensor([ids])), state["mem_embedding"][None]], dim=1)
        h = model.model(inputs_embeds=embeds).last_hidden_state[:, -1]
        r, c = state["retrieval_proj"], state["cross_proj"]
        retrieval = F.normalize(F.layer_norm(F.linear(h, r["0.weight"], r["0.bias"]), (RETRIEVAL,), r["1.weight"],
                                             r["1.bias"]), dim=-1)
        hidden = F.gelu(F.linear(h, c["net.0.weight"], c["net.0.bias"]))
        projected = F.layer_norm(F.linear(hidden, c["net.2.weight"], c["net.2.bias"]), (GENERATOR,),
                                 c["net.3.weight"], c["net.3.bias"])
    return h[0].numpy(), retrieval[0].numpy(), projected[0].numpy()


def test_compressor_graphs_match_the_reference(reference_checkpoint, tmp_path):
    root, state = reference_checkpoint
    export_memory(root, tmp_path / "out", trust_pickle=True)
    compressor = Compressor(tmp_path / "out", provider="cpu")
    retrieval, projected = compressor.embed_evidence(TEXTS)
    for i, text in enumerate(TEXTS):
        ids = compressor._ids(text)
        h, expected_retrieval, expected_projected = reference_outputs(root / "base", state, "compress", ids[0].tolist())
        latent = compressor.compress.run(["latent"], {"input_ids": ids})[0][0]
        np.testing.assert_allclose(latent, h, atol=1e-4)
        np.testing.assert_allclose(retrieval[i], expected_retrieval, atol=1e-4)
        np.testing.assert_allclose(projected[i], expected_projected, atol=1e-4)
    query_ids = compressor._ids(TEXTS[0])[0].tolist()
    np.testing.assert_allclose(compressor.embed_query(TEXTS[0]),
                               reference_outputs(root / "base", state, "query", query_ids)[1], atol=1e-4)
    assert not np.allclose(compressor.embed_query(TEXTS[0]), retrieval[0], atol=1e-3)  # two different adapters
    info = json.loads((tmp_path / "out" / "memory.json").read_text())
    assert (info["retrieval_dim"], info["generator_hidden"], info["max_evidence_tokens"]) == (RETRIEVAL, GENERATOR, 128)
    assert info["label"] == "Latent context {i}: "


def test_own_safetensors_layout_gives_the_same_graphs(reference_checkpoint, tmp_path):
    root, state = reference_checkpoint
    own = tmp_path / "own"
    shutil.copytree(root / "base", own / "base")
    flat = {"mem_embedding": state["mem_embedding"]}
    for group in ("retrieval_proj", "cross_proj", "lora_compress", "lora_query"):
        flat.update({f"{group}.{k}": v for k, v in state[group].items()})
    save_file({k: v.numpy() for k, v in flat.items()}, own / "memory.safetensors")
    (own / "memory_config.json").write_text(json.dumps({"lora_scale": SCALE}))
    export_memory(own, tmp_path / "a")
    export_memory(root, tmp_path / "b", trust_pickle=True)
    a, b = Compressor(tmp_path / "a", provider="cpu"), Compressor(tmp_path / "b", provider="cpu")
    np.testing.assert_allclose(a.embed_evidence(TEXTS)[1], b.embed_evidence(TEXTS)[1], atol=1e-6)
    assert a.identity == b.identity


def test_export_memory_command(reference_checkpoint, tmp_path):
    import subprocess
    import sys

    root, _ = reference_checkpoint
    run = subprocess.run([sys.executable, "-m", "edgegen", "export-memory", str(root), str(tmp_path / "out"),
                          "--trust-pickle"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "retrieval 16-d" in run.stderr and (tmp_path / "out" / "query.onnx").is_file()


def test_pickles_need_explicit_trust(reference_checkpoint, tmp_path):
    root, _ = reference_checkpoint
    with pytest.raises(EdgegenError, match="is a pickle.*--trust-pickle"):
        export_memory(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
