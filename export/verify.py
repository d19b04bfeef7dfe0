"""Check an exported graph against transformers on the same weights."""
from pathlib import Path

import numpy as np

from ..runtime.engine import Engine
from ..runtime.manifest import Manifest
from .checkpoint import ModelSpec, read_json
from .errors import ExportError

VERIFY_TOKENS, VERIFY_PREFILL = 16, 10


def load_reference(src: Path, spec: ModelSpec):
    """The source checkpoint as a float32 transformers model (MARS's a2d-qwen2 loads as Qwen2)."""
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as e:
        raise ExportError("verification needs torch and transformers: pip install 'edgegen[export]' "
                          "(or pass --no-verify)") from e
    config = read_json(src / "config.json")
    config.pop("model_type")
    config = AutoConfig.for_model(spec.architecture, **config)
    model_class = type(AutoModelForCausalLM.from_config(config))
    return model_class.from_pretrained(src, config=config, dtype=torch.float32).eval()


def reference_logits(src: Path, spec: ModelSpec, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return load_reference(src, spec)(torch.from_numpy(ids[None])).logits[0].numpy()


def compare_with_transformers(src: Path, model_dir: Path, manifest: Manifest, spec: ModelSpec) -> dict:
    """Prefill, then a cached multi-token step, through the runtime's own engine on CPU."""
    ids = np.random.default_rng(0).integers(0, spec.vocab_size, VERIFY_TOKENS)
    expected = reference_logits(src, spec, ids)
    engine = Engine(model_dir, manifest, provider="cpu", max_context=min(manifest.max_context, 64))
    prefill = engine.logits(ids[:VERIFY_PREFILL].tolist(), VERIFY_PREFILL)
    step = engine.logits(ids[VERIFY_PREFILL:].tolist(), VERIFY_TOKENS - VERIFY_PREFILL)
    diff = np.abs(np.concatenate([prefill, step]) - expected).max()
    return {"max_abs_logit_diff": float(diff), "tokens": VERIFY_TOKENS, "reference": "transformers, float32",
            "max_abs_reference_logit": float(np.abs(expected).max())}
