"""edgegen: on-device LLM inference with MARS multi-token block decoding."""
from pathlib import Path

from .models import DEFAULT_MODEL
from .runtime import Chat, EdgegenError, Generation, GenerationOptions, Model, Result, Stats
from .runtime import load as load_model
from .runtime.compressor import Compressor
from .runtime.latent_store import LatentStore
from .runtime.rag import RagAnswer, index_evidence, rag

__version__ = "0.1.0"

__all__ = ["DEFAULT_MODEL", "Chat", "Compressor", "EdgegenError", "Generation", "GenerationOptions", "LatentStore",
           "Model", "RagAnswer", "Result", "Stats", "index_evidence", "load", "rag"]


def load(path: str | Path | None = None, provider: str = "auto", max_context: int | None = None,
         threads: int | None = None, wait: float | None = None, prompt_cache: str | Path | None = None) -> Model:
    """Load an exported model directory; with no path, the bundled default model. `wait`: seconds a generation
    waits while another thread's generation holds the model (None: until it is free); `prompt_cache`: a
    directory where prompts' KV is kept, so that later processes skip the prefill of prefixes seen before."""
    if path is None and not (DEFAULT_MODEL / "edgegen.json").is_file():
        raise EdgegenError(f"the bundled default model is missing from this installation ({DEFAULT_MODEL}); "
                           "reinstall edgegen, or pass the directory of a model made with `edgegen export`")
    return load_model(path or DEFAULT_MODEL, provider, max_context, threads, wait, prompt_cache)
