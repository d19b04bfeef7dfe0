"""The CUDA path on a GPU machine (`pytest -m gpu`); skipped with the reason elsewhere."""
import numpy as np
import pytest

from edgegen.runtime.engine import Engine
from edgegen.runtime.errors import EdgegenError
from edgegen.runtime.manifest import Manifest
from edgegen.runtime.providers import make_session


def cuda_or_skip(model_dir):
    try:
        make_session(model_dir / "model.onnx", "cuda", None)
    except EdgegenError as e:
        pytest.skip(f"no working CUDA execution provider here: {e}")


@pytest.fixture(scope="module")
def fp16_standard(checkpoints, tmp_path_factory):
    from edgegen.export import export_model

    out = tmp_path_factory.mktemp("gpu") / "mars-fp16-standard"
    export_model(checkpoints["mars"], out, dtype="fp16", attention="standard", quiet=True)
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["gqa", "standard"])
def test_cuda_logits_match_the_cpu(attention, checkpoints, fp16_standard, tmp_path):
    from edgegen.export import export_model

    model_dir = fp16_standard if attention == "standard" else tmp_path / "fp16"
    if attention == "gqa":
        export_model(checkpoints["mars"], model_dir, dtype="fp16", quiet=True)
    cuda_or_skip(model_dir)
    ids = list(range(5, 40))
    rows = {}
    for provider in ("cpu", "cuda"):
        engine = Engine(model_dir, Manifest.load(model_dir), provider=provider, max_context=64)
        assert engine.provider.lower().startswith(provider)
        rows[provider] = np.concatenate([engine.logits(ids[:20], 1), engine.logits(ids[20:21], 1),
                                         engine.logits(ids[21:26], 5), engine.logits(ids[26:27], 1)])
    assert np.abs(rows["cuda"] - rows["cpu"]).max() < 2e-2 * max(1.0, np.abs(rows["cpu"]).max())


@pytest.mark.gpu
def test_doctor_passes_on_cuda(exported):
    from edgegen.doctor import conformance

    cuda_or_skip(exported["mars"])
    report = conformance(exported["mars"], "cuda", None, None)
    assert report["provider"] == "CUDAExecutionProvider" and report["passed"], report["modes"]
    assert all(report["cost_curve_ms"].values())


@pytest.mark.gpu
def test_top_k_outputs_on_cuda_give_the_tokens_of_whole_rows(checkpoints, tmp_path):
    from edgegen import load
    from edgegen.export import export_model

    export_model(checkpoints["mars"], tmp_path / "topk", dtype="fp16", topk=16, quiet=True)
    cuda_or_skip(tmp_path / "topk")
    model = load(tmp_path / "topk", provider="cuda", max_context=128)
    for options in ({"mode": "ar"}, {"mode": "verify"}, {"temperature": 0.8, "top_k": 8, "seed": 1}):
        full = model.generate("def add(a, b):", max_new_tokens=24, full_logits=True, **options).token_ids
        assert model.generate("def add(a, b):", max_new_tokens=24, **options).token_ids == full
