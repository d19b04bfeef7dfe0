"""One onnxruntime decoder session and its KV cache, preallocated once for max_context.

The graph's past and present KV are bound to the same buffer, so a forward writes the new
tokens' KV in place; rewinding (dropping mask-token KV, reusing a chat prefix) only shortens
the list of cached tokens. ConcatKVEngine serves graphs whose present KV is a new tensor (optimum's exports).
"""
import hashlib
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import EdgegenError
from .manifest import Manifest
from .providers import CPU, PROVIDERS, TENSORRT, make_session
from .sampling import Rows
from .tensorrt import prebuilt_engine, session_options

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
                 max_context: int | None = None, threads: int | None = None, max_block_tokens: int = 32,
                 trt_options: dict | None = None):
        """`trt_options` add to (or override) the TensorRT options; a prebuilt engine (`edgegen build-engine`) for
        this context serves provider 'tensorrt', and 'auto' where onnxruntime has TensorRT."""
        self.manifest, self.max_block_tokens = manifest, max_block_tokens
        self.max_context = max_context or min(2048, manifest.max_context)
        if not 0 < self.max_context <= manifest.max_context:
            raise EdgegenError(f"max_context {self.max_context} is outside 1..{manifest.max_context}, the range this "
                               "model was exported for; re-export with a larger --max-context to go beyond it")
        # an fp32 graph computes in fp32 on the GPU too: TF32 MatMuls flip near-tied tokens against the CPU
        cuda_options = {"use_tf32": "0"} if manifest.dtype == "fp32" else {}
        graph = Path(model_dir) / manifest.graph.file
        name = PROVIDERS.get(provider.lower(), provider)
        tensorrt_here = TENSORRT in ort.get_available_providers()
        prebuilt = prebuilt_engine(model_dir, self.max_context, max_block_tokens) \
            if name in ("auto", TENSORRT) and tensorrt_here else None
        if prebuilt:
            graph, provider, trt_options = prebuilt, TENSORRT, {}
        elif name == TENSORRT:
            trt_options = {**session_options(manifest, self.max_context, max_block_tokens), **(trt_options or {})}
        # a quantized export of a tied model reads its embeddings through a Reshape of the LM head weights:
        # folding it would copy them (65 MB more peak memory and 0.1 s more load at Qwen2.5-0.5B's int4)
        self.session, self.provider = make_session(graph, provider, threads, trt_options, cuda_options,
                                                   fold_constants=not manifest.weights)
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
        self._outputs = (-1, None)  # (rows, top-k) of the outputs and logits_to_keep bound now
        names, k = manifest.graph, manifest.graph.topk
        self._scores = {  # output -> its host buffer, grown to the most rows a step keeps
            names.logits: np.empty((1, 0, manifest.vocab_size), np.float32),
            **({names.topk_ids: np.empty((1, 0, k), np.int64), names.topk_logits: np.empty((1, 0, k), np.float32),
                names.logsumexp: np.empty((1, 0), np.float32)} if k else {})}
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

    @property
    def kv_bytes(self) -> int:
        """The KV cache's memory: keys and values of every layer for max_context tokens, allocated at load."""
        m = self.manifest
        return 2 * m.num_layers * m.num_kv_heads * self.max_context * m.head_dim * np.dtype(KV_DTYPES[m.dtype]).itemsize

    def _bind_kv_cache(self) -> dict:
        """One max-context buffer per layer's keys and values, bound as past input and present output."""
        m, names = self.manifest, self.manifest.graph
        shape = [1, m.num_kv_heads, self.max_context, m.head_dim]
        cache = {}
        self._kv_host = []  # on the CPU: the NumPy arrays the buffers share memory with
        for layer in range(m.num_layers):
            for past, present in ((names.past_key, names.present_key), (names.past_value, names.present_value)):
                if self.kv_device == "cpu":
                    self._kv_host.append(np.zeros(shape, KV_DTYPES[m.dtype]))
                    buffer = ort.OrtValue.ortvalue_from_numpy(self._kv_host[-1])
                else:
                    buffer = ort.OrtValue.ortvalue_from_shape_and_type(shape, KV_DTYPES[m.dtype], self.kv_device, 0)
                self.binding.bind_ortvalue_input(past % layer, buffer)
                cache[present % layer] = buffer
        return cache

    def read_kv(self, length: int) -> np.ndarray:
        """The cached keys and values of the first `length` tokens: [2 * layers, kv_heads, length, head_dim]."""
        arrays = self._kv_host or [buffer.numpy() for buffer in self.kv_cache.values()]
        return np.stack([array[0, :, :length] for array in arrays])

    def write_kv(self, tokens: list, kv: np.ndarray) -> None:
        """Put saved keys and values (read_kv's layout) in place: the cache then holds exactly `tokens`."""
        for i, buffer in enumerate(self.kv_cache.values()):
            array = self._kv_host[i] if self._kv_host else buffer.numpy()
            array[0, :, :len(tokens)] = kv[i]
            if not self._kv_host:
                buffer.update_inplace(array)
        self.tokens = list(tokens)

    def _bind_outputs(self, rows: int, top_k: bool) -> None:
        """Bind logits_to_keep, and where the kept rows' scores go: host buffers grown to the most rows a step
        keeps, for the logits or for only the top-k outputs (then the logits stay where they were computed).
        Rebinding a name replaces its binding; only a switch between the two unbinds the others, and then the KV
        outputs are bound again."""
        names = self.manifest.graph
        if rows != self._outputs[0]:
            self.binding.bind_cpu_input(names.logits_to_keep, np.array(rows, np.int64))
        if top_k != self._outputs[1]:
            self.binding.clear_binding_outputs()
            for name, buffer in self.kv_cache.items():  # the KV outputs write into the past buffers
                self.binding.bind_ortvalue_output(name, buffer)
        self._outputs = (rows, top_k)
        for name in (names.topk_ids, names.topk_logits, names.logsumexp) if top_k else (names.logits,):
            array = self._scores[name]
            if rows > array.shape[1]:
                array = self._scores[name] = np.empty((1, rows, *array.shape[2:]), array.dtype)
            view = array[:, :rows]
            self.binding.bind_output(name, "cpu", 0, array.dtype, view.shape, view.ctypes.data)

    def forward(self, items: list, logits_to_keep: int, top_k: bool = False) -> Rows:
        """Append token ids (and Latents, on a graph exported with latent inputs) to the cache; return
        the scores of the last `logits_to_keep` of them: logits [keep, vocab], or with `top_k` (on a graph
        exported with top-k outputs) each row's most likely tokens, their logits and the row's log-sum-exp.

        The scores are views of buffers the next forward overwrites (copy them to keep them): onnxruntime
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
        if (logits_to_keep, top_k) != self._outputs:
            if top_k and not names.topk:
                raise EdgegenError("this model's graph has no top-k outputs; re-export it with "
                                   "`edgegen export --topk K`")
            self._bind_outputs(logits_to_keep, top_k)
        self._run(past, new)
        self.tokens.extend(items)
        if not top_k:
            return Rows(self._scores[names.logits][0, :logits_to_keep])
        ids, logits = (self._scores[name][0, :logits_to_keep] for name in (names.topk_ids, names.topk_logits))
        order = ids.argsort(axis=-1)
        return Rows(np.take_along_axis(logits, order, -1), np.take_along_axis(ids, order, -1),
                    self._scores[names.logsumexp][0, :logits_to_keep])

    def _run(self, past: int, new: int) -> None:
        start = time.perf_counter()
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as e:  # noqa: BLE001 - onnxruntime's errors are plain pybind exceptions
            raise EdgegenError(f"onnxruntime failed on {past} cached + {new} new tokens ({str(e)[:300]}); the graph "
                               "does not match edgegen.json (edited, or another export's): re-export the model") from e
        self.forward_seconds += time.perf_counter() - start

    def logits(self, items: list, logits_to_keep: int) -> np.ndarray:
        """forward() returning a copy of the whole logit rows, [keep, vocab], for checks and comparisons."""
        return self.forward(items, logits_to_keep).values.copy()

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


class ConcatKVEngine(Engine):
    """An engine for graphs whose present KV is a new tensor, the past followed by the new tokens' KV (optimum's
    exports): onnxruntime allocates each forward's presents, and they are bound as the next forward's pasts. After
    a rewind, the next forward first cuts the pasts to the tokens still cached (one copy)."""

    def _bind_kv_cache(self) -> dict:
        """Empty pasts to begin with; the logits and presents are bound before each forward."""
        m, names = self.manifest, self.manifest.graph
        self._kv_host = []  # read_kv reads the bound pasts themselves
        self._kv_names = [(past % layer, present % layer) for layer in range(m.num_layers)
                          for past, present in ((names.past_key, names.present_key),
                                                (names.past_value, names.present_value))]
        return self._bind_past(self._on_kv_device(np.zeros((2 * m.num_layers, m.num_kv_heads, 0, m.head_dim),
                                                           KV_DTYPES[m.dtype])))

    def _bind_past(self, values: list) -> dict:
        self.kv_cache = {past: value for (past, _), value in zip(self._kv_names, values)}
        for name, value in self.kv_cache.items():
            self.binding.bind_ortvalue_input(name, value)
        return self.kv_cache

    def _on_kv_device(self, kv: np.ndarray) -> list:
        """read_kv's layout as one past tensor per layer's keys or values."""
        return [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array[None]), self.kv_device, 0) for array in kv]

    def write_kv(self, tokens: list, kv: np.ndarray) -> None:
        self._bind_past(self._on_kv_device(kv))
        self.tokens = list(tokens)

    def _bind_outputs(self, rows: int, top_k: bool) -> None:
        """Nothing to bind here: the graph returns logits for every new token, and _run keeps the last `rows`."""
        self._outputs = (rows, top_k)

    def _run(self, past: int, new: int) -> None:
        names = self.manifest.graph
        if next(iter(self.kv_cache.values())).shape()[2] != past:  # tokens were rewound since the last forward
            self._bind_past(self._on_kv_device(self.read_kv(past)))
        # bound unallocated every time: onnxruntime would write into the tensors the last forward left bound, whose
        # shape no longer fits
        self.binding.bind_output(names.logits, "cpu")
        for _, present in self._kv_names:
            self.binding.bind_output(present, self.kv_device)
        super()._run(past, new)
        logits, *presents = self.binding.get_outputs()
        self._bind_past(presents)
        self._scores[names.logits] = logits.numpy()[:, -self._outputs[0]:].astype(np.float32, copy=False)
