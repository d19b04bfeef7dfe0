"""Check an exported graph against transformers on the same weights; an export beyond its bound fails."""
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..runtime.engine import Engine
from ..runtime.manifest import Manifest
from .checkpoint import ModelSpec, read_json
from .errors import ExportError

VERIFY_TOKENS, VERIFY_PREFILL = 16, 10
# the largest |logit difference| an export may show against transformers in fp32, as a fraction of the
# largest |logit| (at least 1). int8/int4 bounds only catch a quantized graph gone to garbage: random weights
# are quantization's worst case, so their error is near the logits' own size; what gates a quantized export's
# architecture is its graph before quantization, checked at the fp16 bound (README, "Exporting")
BOUNDS = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.5, "int4": 1.5}


def load_reference(src: Path, spec: ModelSpec):
    """The source checkpoint as a float32 transformers model (MARS's a2d releases load as their base)."""
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


def logit_diff(model_dir: Path, manifest: Manifest, ids: np.ndarray, expected: np.ndarray) -> float:
    """Prefill, then a cached multi-token step, through the runtime's own engine on CPU."""
    engine = Engine(model_dir, manifest, provider="cpu", max_context=min(manifest.max_context, 64))
    prefill = engine.logits(ids[:VERIFY_PREFILL].tolist(), VERIFY_PREFILL)
    step = engine.logits(ids[VERIFY_PREFILL:].tolist(), VERIFY_TOKENS - VERIFY_PREFILL)
    return float(np.abs(np.concatenate([prefill, step]) - expected).max())


def compare_with_transformers(src: Path, model_dir: Path, manifest: Manifest, spec: ModelSpec,
                              unquantized: str | None = None) -> dict:
    """The graph's logits against transformers' (and those of `unquantized`, the graph before quantization)."""
    ids = np.random.default_rng(0).integers(0, spec.vocab_size, VERIFY_TOKENS)
    expected = reference_logits(src, spec, ids)
    result = {"max_abs_logit_diff": logit_diff(model_dir, manifest, ids, expected), "tokens": VERIFY_TOKENS,
              "reference": "transformers, float32", "max_abs_reference_logit": float(np.abs(expected).max())}
    if unquantized:
        before = replace(manifest, graph=replace(manifest.graph, file=unquantized))
        result["unquantized_max_abs_logit_diff"] = logit_diff(model_dir, before, ids, expected)
    return result


def check_bounds(verification: dict, dtype: str) -> None:
    """Fail the export when its graph does not compute what transformers computes on the same weights."""
    scale = max(1.0, verification["max_abs_reference_logit"])
    for key, graph, bound in (("unquantized_max_abs_logit_diff", "graph before quantization", "fp16"),
                              ("max_abs_logit_diff", f"{dtype} graph", dtype)):
        if key in verification and verification[key] > BOUNDS[bound] * scale:
            raise ExportError(f"verification failed: the {graph}'s logits differ from transformers' by up to "
                              f"{verification[key]:.3g}, above the {bound} bound of {BOUNDS[bound]:g} x the largest "
                              f"|logit| ({scale:.3g}), so it does not compute this checkpoint's model; please report "
                              "it with the checkpoint's config.json (--no-verify exports it unchecked)")
