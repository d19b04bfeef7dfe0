"""edgegen.runtime: the device side. Imports numpy, onnxruntime, tokenizers and jinja2 only."""
from .errors import EdgegenError
from .manifest import Manifest
from .model import Chat, Generation, Model, Result, load
from .options import GenerationOptions
from .stats import Stats

__all__ = ["Chat", "EdgegenError", "Generation", "GenerationOptions", "Manifest", "Model", "Result", "Stats", "load"]
