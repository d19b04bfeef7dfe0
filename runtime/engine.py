"""One onnxruntime decoder session and its KV cache, preallocated once for max_context.

The graph's past and present KV are bound to the same buffer, so a forward writes the new
tokens' KV in place; rewinding (dropping mask-token KV, reusing a chat prefix) only shortens
the list of cached tokens.
"""
import hashlib
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .cache import cache_dir
from .errors import EdgegenError
from .manifest import Manifest
from .providers import CPU, PROVIDERS, TENSORRT, make_session, tensorrt_options

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


class Engine:
    def __init__(self, model_dir: Path, manifest: Manifest, provider: str = "auto",
                 max_context: int | None = None, threads: int | None = None, max_block_tokens: int = 32):
        self.manifest = manifest
        self.max_context = max_context or min(2048, manifest.max_context)
        if not 0 < self.max_context <= manifest.max_context:
            raise EdgegenError(f"max_context {self.max_context} is outside 1..{manifest.max_context}, the range this "
                               "model was exported for; re-export with a larger --max-context to go beyond it")
        # an fp32 graph computes in fp32 on the GPU too: TF32 MatMuls flip near-tied tokens against the CPU
        cuda_options = {"use_tf32": "0"} if manifest.dtype == "fp32" else {}
        wants_tensorrt = PROVIDERS.get(provider.lower(), provider) == TENSORRT
        trt_options = self._tensorrt_options(max_block_tokens) if wants_tensorrt else None
        self.session, self.provider = make_session(Path(model_dir) / manifest.graph.file, provider, threads,
                                                   trt_options, cuda_options)
        self.device = "cpu" if self.provider == CPU else "cuda"
        # onnxruntime's CUDA GroupQueryAttention takes fp16/bf16 only: an fp32 GQA graph attends on the CPU,
        # and its KV must live there too (a bound input on another device is copied once, at bind time)
        on_cpu = manifest.graph.attention == "gqa" and manifest.dtype == "fp32"
        self.kv_device = "cpu" if on_cpu else self.device
        self.binding = self.session.io_binding()
        self.kv_cache = self._bind_kv_cache()
        self.tokens: list = []  # the token ids (and Latents) whose KV is in the cache, in order
        self._ones = np.ones((1, self.max_context), np.int64)
        self._positions = np.arange(self.max_context, dtype=np.int64)[None, :]
        self._keep = -1  # the logits_to_keep bound now
        self._logits = np.empty((1, 0, manifest.vocab_size), np.float32)  # grown to the most rows a step keeps
        self._step_inputs: dict[int, tuple] = {}  # token count -> (ids, positions) buffers on the device
        self._bound_count = -1  # the token count whose buffers are bound
        self.forward_seconds = 0.0  # time spent inside onnxruntime, for overhead accounting
        if self.device != "cpu":
            self._warm_up(max_block_tokens)

    def _warm_up(self, max_block_tokens: int) -> None:
        """On CUDA the first forward of each new token count costs ~40 ms (H100, onnxruntime 1.31), later ones
        under 1 ms: pay for every step shape a decoding mode uses at load, not in the middle of an answer."""
        for count in range(1, min(max_block_tokens, self.max_context) + 1):
            for keep in {1, count}:
                self.forward([0] * count, keep)
                self.rewind(0)
        self.forward_seconds = 0.0

    def _tensorrt_options(self, max_block_tokens: int) -> dict:
        """Engine and timing caches per model and precision; one profile for prefill, one for decode and
        verify steps (1 .. max_block_tokens new tokens). The KV buffers have one fixed shape."""
        m, names = self.manifest, self.manifest.graph
        directory = cache_dir() / "tensorrt" / f"{m.source.get('weights_sha256', 'unknown')[:16]}-" \
                                               f"{m.weights or m.dtype}-{self.max_context}"
        kv = [f"{name % layer}:1x{m.num_kv_heads}x{self.max_context}x{m.head_dim}"
              for layer in range(m.num_layers) for name in (names.past_key, names.past_value)]
        typical = min(256, self.max_context)
        shapes = {"min": (1, 1, 1, 1), "opt": (typical, typical, max_block_tokens, self.max_context // 2),
                  "max": (self.max_context, self.max_context, max_block_tokens, self.max_context)}
        profiles = {kind: [f"{names.input_ids}:1x{prefill}", f"{names.attention_mask}:1x{prefill_total}", *kv,
                           f"{names.input_ids}:1x{step}", f"{names.attention_mask}:1x{step_total}", *kv]
                    for kind, (prefill, prefill_total, step, step_total) in shapes.items()}
        return tensorrt_options(directory, profiles)

    def _bind_kv_cache(self) -> list:
        m, names = self.manifest, self.manifest.graph
        shape = [1, m.num_kv_heads, self.max_context, m.head_dim]
        cache = []
        for layer in range(m.num_layers):
            for past, present in ((names.past_key, names.present_key), (names.past_value, names.present_value)):
                buffer = ort.OrtValue.ortvalue_from_shape_and_type(shape, KV_DTYPES[m.dtype], self.kv_device, 0)
                self.binding.bind_ortvalue_input(past % layer, buffer)
                self.binding.bind_ortvalue_output(present % layer, buffer)
                cache.append(buffer)
        return cache

    def forward(self, items: list, logits_to_keep: int) -> np.ndarray:
        """Append token ids (and Latents, on a graph exported with latent inputs) to the cache; return
        the logits of the last `logits_to_keep` of them, [keep, vocab].

        The logits are a view of a buffer the next forward overwrites (copy them to keep them): onnxruntime
        writes them there directly. Token ids go to preallocated buffers on the provider's device; on the CPU
        an AR step rebinds nothing but the attention mask, which grows.
        """
        past, new = len(self.tokens), len(items)
        if past + new > self.max_context:
            raise ContextFull(f"{past + new} tokens do not fit in max_context {self.max_context}")
        names, binding = self.manifest.graph, self.binding
        token_ids = self._bind_latents(items) if names.latent_embeds else items
        self._bind_step_inputs(token_ids, past)
        binding.bind_cpu_input(names.attention_mask, self._ones[:, :past + new])
        if logits_to_keep != self._keep:
            self._keep = logits_to_keep
            binding.bind_cpu_input(names.logits_to_keep, np.array(logits_to_keep, np.int64))
            if logits_to_keep > self._logits.shape[1]:
                self._logits = np.empty((1, logits_to_keep, self.manifest.vocab_size), np.float32)
            logits = self._logits[:, :logits_to_keep]
            binding.bind_output(names.logits, "cpu", 0, np.float32, logits.shape, logits.ctypes.data)
        start = time.perf_counter()
        self.session.run_with_iobinding(binding)
        self.forward_seconds += time.perf_counter() - start
        self.tokens.extend(items)
        return self._logits[0, :logits_to_keep]

    def _bind_step_inputs(self, token_ids: list[int], past: int) -> None:
        """Write the step's ids (and positions, on graphs exported before positions came from the attention
        mask) into buffers kept per token count. A CUDA session copies a bound input at bind time, so there
        every step binds again; a CPU session reads the buffer itself, so rebinding is needed only when the
        count changes."""
        names, new = self.manifest.graph, len(token_ids)
        if new not in self._step_inputs:
            self._step_inputs[new] = tuple(ort.OrtValue.ortvalue_from_shape_and_type([1, new], np.int64, self.device, 0)
                                           for _ in range(2 if names.position_ids else 1))
        buffers = self._step_inputs[new]
        buffers[0].update_inplace(np.asarray([token_ids], np.int64))
        if names.position_ids:
            buffers[1].update_inplace(self._positions[:, past:past + new])
        if new != self._bound_count or self.device != "cpu":
            self._bound_count = new
            self.binding.bind_ortvalue_input(names.input_ids, buffers[0])
            if names.position_ids:
                self.binding.bind_ortvalue_input(names.position_ids, buffers[1])

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
