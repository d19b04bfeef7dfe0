"""One onnxruntime decoder session and its KV cache, preallocated once for max_context.

The graph's past and present KV are bound to the same buffer, so a forward writes the new
tokens' KV in place; rewinding (dropping mask-token KV, reusing a chat prefix) only shortens
the list of cached tokens.
"""
import hashlib
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import EdgegenError
from .manifest import Manifest

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
KV_DTYPES = {"fp32": np.float32, "fp16": np.float16}


class ContextFull(EdgegenError):
    pass


class Latent:
    """A vector that takes one prompt position in place of a token's embedding (latent-memory RAG).
    Latents compare equal when their vectors are byte-identical, so cached prefixes still match."""

    def __init__(self, vector: np.ndarray):
        self.vector = np.ascontiguousarray(vector, np.float32).reshape(-1)
        self.key = hashlib.sha1(self.vector.tobytes()).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, Latent) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


def select_provider(name: str) -> str:
    """'auto' picks TensorRT > CUDA > CPU among the providers this onnxruntime build has."""
    available = ort.get_available_providers()
    if name == "auto":
        return next(p for p in PROVIDERS.values() if p in available)
    provider = PROVIDERS.get(name.lower(), name)
    if provider not in available:
        raise EdgegenError(f"execution provider {name!r} is not available in this onnxruntime build "
                           f"(available: {', '.join(available)}); install onnxruntime-gpu for cuda/tensorrt "
                           "or use provider='auto'")
    return provider


def make_session(path: Path, provider: str, threads: int | None) -> ort.InferenceSession:
    if not path.is_file():
        raise EdgegenError(f"missing file {path}; re-export the model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(os.fspath(path), options, providers=[provider])


class Engine:
    def __init__(self, model_dir: Path, manifest: Manifest, provider: str = "auto",
                 max_context: int | None = None, threads: int | None = None):
        self.manifest = manifest
        self.max_context = max_context or min(2048, manifest.max_context)
        if not 0 < self.max_context <= manifest.max_context:
            raise EdgegenError(f"max_context {self.max_context} is outside 1..{manifest.max_context}, the range this "
                               "model was exported for; re-export with a larger --max-context to go beyond it")
        self.provider = select_provider(provider)
        self.session = make_session(Path(model_dir) / manifest.graph.file, self.provider, threads)
        self.device = "cpu" if self.provider == "CPUExecutionProvider" else "cuda"
        self.binding = self.session.io_binding()
        self.kv_cache = self._bind_kv_cache()
        self.tokens: list = []  # the token ids (and Latents) whose KV is in the cache, in order
        self._ones = np.ones((1, self.max_context), np.int64)
        self._positions = np.arange(self.max_context, dtype=np.int64)[None, :]
        self._keep = np.zeros((), np.int64)  # logits_to_keep, bound once and updated in place
        self.binding.bind_cpu_input(manifest.graph.logits_to_keep, self._keep)
        self._logits = np.empty((1, 0, manifest.vocab_size), np.float32)  # grown to the most rows a step keeps
        self._ids = self._step_positions = np.empty((1, 0), np.int64)  # bound; rewritten in place while the
        # step's token count stays the same, as the logits output is while its row count does
        self.forward_seconds = 0.0  # time spent inside onnxruntime, for overhead accounting

    def _bind_kv_cache(self) -> list:
        m, names = self.manifest, self.manifest.graph
        shape = [1, m.num_kv_heads, self.max_context, m.head_dim]
        cache = []
        for layer in range(m.num_layers):
            for past, present in ((names.past_key, names.present_key), (names.past_value, names.present_value)):
                buffer = ort.OrtValue.ortvalue_from_shape_and_type(shape, KV_DTYPES[m.dtype], self.device, 0)
                self.binding.bind_ortvalue_input(past % layer, buffer)
                self.binding.bind_ortvalue_output(present % layer, buffer)
                cache.append(buffer)
        return cache

    def forward(self, items: list, logits_to_keep: int) -> np.ndarray:
        """Append token ids (and Latents, on a graph exported with latent inputs) to the cache; return
        the logits of the last `logits_to_keep` of them, [keep, vocab].

        The logits are a view of a buffer the next forward overwrites (copy them to keep them): onnxruntime
        writes them there directly, and an AR step rebinds nothing but the attention mask, which grows.
        """
        past, new = len(self.tokens), len(items)
        if past + new > self.max_context:
            raise ContextFull(f"{past + new} tokens do not fit in max_context {self.max_context}")
        names, binding = self.manifest.graph, self.binding
        token_ids = self._bind_latents(items) if names.latent_embeds else items
        if new != self._ids.shape[1]:
            self._ids, self._step_positions = np.empty((1, new), np.int64), np.empty((1, new), np.int64)
            binding.bind_cpu_input(names.input_ids, self._ids)
            if names.position_ids:  # graphs exported before positions came from the attention mask
                binding.bind_cpu_input(names.position_ids, self._step_positions)
        self._ids[0] = token_ids
        if names.position_ids:
            self._step_positions[0] = self._positions[0, past:past + new]
        binding.bind_cpu_input(names.attention_mask, self._ones[:, :past + new])
        if logits_to_keep != self._keep:
            self._keep[()] = logits_to_keep
            if logits_to_keep > self._logits.shape[1]:
                self._logits = np.empty((1, logits_to_keep, self.manifest.vocab_size), np.float32)
            logits = self._logits[:, :logits_to_keep]
            binding.bind_output(names.logits, "cpu", 0, np.float32, logits.shape, logits.ctypes.data)
        start = time.perf_counter()
        self.session.run_with_iobinding(binding)
        self.forward_seconds += time.perf_counter() - start
        self.tokens.extend(items)
        return self._logits[0, :logits_to_keep]

    def _bind_latents(self, items: list) -> list[int]:
        """Bind latent_embeds/latent_mask for this step; latent positions get a placeholder token id."""
        is_latent = np.array([[isinstance(item, Latent) for item in items]])
        embeds = np.zeros((1, len(items), self.manifest.hidden_size), KV_DTYPES[self.manifest.dtype])
        for position in np.flatnonzero(is_latent[0]):
            embeds[0, position] = items[position].vector
        self.binding.bind_cpu_input(self.manifest.graph.latent_embeds, embeds)
        self.binding.bind_cpu_input(self.manifest.graph.latent_mask, is_latent)
        return [0 if isinstance(item, Latent) else item for item in items]

    def rewind(self, length: int) -> None:
        """Forget every cached token from `length` on; their KV rows are simply overwritten later."""
        del self.tokens[length:]
