import os
import shutil
import tempfile

os.environ["EDGEGEN_CACHE"] = tempfile.mkdtemp(prefix="edgegen-test-cache-")  # never the user's cache

import pytest  # noqa: E402
from tiny_models import save_model  # noqa: E402

from edgegen.export import export_model  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["EDGEGEN_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """name -> checkpoint directory; built once per test session."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "mars": save_model(root / "mars-tiny", mars=True),
        "qwen2_4x": save_model(root / "qwen2-4x", config_format="4.x", seed=1),
        "llama": save_model(root / "llama-tiny", arch="llama", with_mask=False, seed=2),
        "bf16_sharded": save_model(root / "bf16-sharded", dtype="bfloat16", shard=True, seed=3),
    }


@pytest.fixture(scope="session")
def exported(checkpoints, tmp_path_factory):
    """name -> exported fp32 model directory."""
    root = tmp_path_factory.mktemp("exported")
    return {name: export_model(src, root / name, quiet=True) and root / name for name, src in checkpoints.items()}


@pytest.fixture(scope="session")
def mars_model(exported):
    from edgegen import load

    return load(exported["mars"], provider="cpu", max_context=256)


@pytest.fixture(scope="session")
def latent_model(checkpoints, tmp_path_factory):
    """The tiny MARS model exported with latent inputs (a latent-RAG generator)."""
    from edgegen import load

    out = tmp_path_factory.mktemp("latent") / "model"
    export_model(checkpoints["mars"], out, latent_inputs=True, quiet=True)
    return load(out, provider="cpu", max_context=256)
