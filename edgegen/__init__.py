"""edgegen: on-device LLM inference with MARS multi-token block decoding."""
__version__ = "0.1.0"

from .runtime import Chat, EdgegenError, Generation, GenerationOptions, Model, Result, Stats, load  # noqa: E402

__all__ = ["Chat", "EdgegenError", "Generation", "GenerationOptions", "Model", "Result", "Stats", "load"]
