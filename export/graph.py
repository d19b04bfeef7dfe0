"""Build the decoder ONNX graph directly from checkpoint weights (no tracing).

One graph serves prefill, AR steps and multi-token block steps (S > 1 on a non-empty past).
Attention is onnxruntime's fused GroupQueryAttention, the op onnxruntime-genai uses: its
past and present KV can share one preallocated max-context buffer, so the runtime appends
KV in place and drops mask-token KV by passing a shorter attention_mask.
"""
import json
import math
from contextlib import contextmanager

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..runtime.manifest import GraphInterface
from .checkpoint import SLIDING, ModelSpec, Weights
from .errors import ExportError

OPSET, IR_VERSION = 17, 8  # what onnxruntime >= 1.14 (JetPack 5 builds included) and TensorRT 8.6+ read
ONNX_DTYPES = {"fp32": (TensorProto.FLOAT, np.float32), "fp16": (TensorProto.FLOAT16, np.float16)}

NAMES = GraphInterface()  # the interface the manifest records for the runtime
INPUT_IDS, ATTENTION_MASK = NAMES.input_ids, NAMES.attention_mask
LOGITS_TO_KEEP, LOGITS = NAMES.logits_to_keep, NAMES.logits
PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE = NAMES.past_key, NAMES.past_value, NAMES.present_key, \
    NAMES.present_value
LATENT_EMBEDS, LATENT_MASK = "latent_embeds", "latent_mask"
TOPK_IDS, TOPK_LOGITS, LOGSUMEXP = "topk_ids", "topk_logits", "logsumexp"


def rope_inv_freq(rope: dict, length: int) -> tuple[np.ndarray, float]:
    """Rotary inverse frequencies and the factor cos and sin are scaled by, computed in float32 like
    transformers' rope init functions, for a table of `length` positions."""
    d = rope["rotary_dim"]
    inv_freq = 1.0 / (np.float32(rope["rope_theta"]) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
    kind, factor = rope["rope_type"], 1.0
    if kind == "linear":
        inv_freq = inv_freq / np.float32(rope["factor"])
    elif kind == "llama3":
        scale, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old_len = rope["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / scale, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / scale + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = np.where(medium, smoothed, scaled)
    elif kind == "longrope":  # the short factors hold up to the original context; beyond it transformers
        original = rope["original_max_position_embeddings"]  # switches every position to the long ones
        if length > original:
            raise ExportError(f"this model's rotary embedding (longrope) changes beyond {original} tokens; "
                              f"export with --max-context {original} or less")
        inv_freq = inv_freq / np.array(rope["short_factor"], np.float32)
        scale = rope["factor"]
        factor = rope.get("attention_factor") or (math.sqrt(1 + math.log(scale) / math.log(original))
                                                  if scale > 1 else 1.0)
    return inv_freq.astype(np.float32), factor


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, dtype: str):
        self.onnx_dtype, self.np_dtype = ONNX_DTYPES[dtype]
        self.nodes, self.initializers = [], []
        self.count = 0
        self.scope = ""  # node names start with it (/model/layers.3/attn), so that profiles can be read

    @contextmanager
    def scoped(self, scope: str):
        outer, self.scope = self.scope, scope
        try:
            yield
        finally:
            self.scope = outer

    def weight(self, name: str, array: np.ndarray, dtype=None) -> str:
        array = np.array(array, dtype=dtype or self.np_dtype, order="C")  # keeps 0-d scalars 0-d
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, values, dtype=np.int64) -> str:
        self.count += 1
        return self.weight(f"const_{self.count}", np.array(values), dtype)

    def op(self, op_type: str, inputs: list, outputs: int | list = 1, domain: str = "", **attrs):
        """Add a node; returns its output name (or names when several are asked for)."""
        self.count += 1
        names = outputs if isinstance(outputs, list) else [f"{op_type}_{self.count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{self.scope}/{op_type}_{self.count}",
                                           domain=domain, **attrs))
        return names[0] if len(names) == 1 else names


def linear(g: GraphBuilder, x: str, weights: Weights, prefixes: list[str], bias: bool) -> str:
    """x @ W^T (+ b) for one or several HF Linear layers packed side by side into one MatMul."""
    w = np.concatenate([weights.get(p + ".weight") for p in prefixes], axis=0)
    y = g.op("MatMul", [x, g.weight(prefixes[0] + ".weight_T", w.T)])
    b = np.concatenate([weights.get(p + ".bias") for p in prefixes]) if bias else None
    if b is not None and b.any():  # an all-zero bias (fresh or pruned layers) is no bias: no kernel for it
        y = g.op("Add", [y, g.weight(prefixes[0] + ".bias_packed", b)])
    return y


def rope_caches(g: GraphBuilder, spec: ModelSpec, length: int) -> dict[str, tuple[str, str]]:
    """cos and sin tables [length, rotary_dim / 2] for each layer type (one pair when their ropes agree)."""
    tables, caches = {}, {}
    for kind, rope in sorted(spec.ropes.items()):
        key = json.dumps(rope, sort_keys=True)
        if key not in tables:
            inv_freq, factor = rope_inv_freq(rope, length)
            freqs = np.outer(np.arange(length, dtype=np.float32), inv_freq)
            suffix = f"_{len(tables)}" if tables else ""
            tables[key] = (g.weight(f"rope_cos{suffix}", np.cos(freqs) * factor),
                           g.weight(f"rope_sin{suffix}", np.sin(freqs) * factor))
        caches[kind] = tables[key]
    return caches


def window(spec: ModelSpec, layer: int) -> int | None:
    """How many tokens this layer's queries see, themselves included (None: all before them)."""
    return spec.sliding_window if spec.layer_types and spec.layer_types[layer] == SLIDING else None


def rms_norm(g: GraphBuilder, x: str, gamma: np.ndarray, name: str, eps: float, standard: bool) -> str:
    return skip_norm(g, x, None, gamma, name, eps, standard)[0]


def qk_normed(g: GraphBuilder, spec: ModelSpec, qkv: str, i: int, weights, standard: bool) -> str:
    """Qwen3 and Gemma3 normalize each head of q and k before the rotary embedding."""
    h, kv, d = spec.num_heads, spec.num_kv_heads, spec.head_dim
    q, k, v = g.op("Split", [qkv, g.const([h * d, kv * d, kv * d])], 3, axis=-1)
    normed = []
    for x, heads, role in ((q, h, "q"), (k, kv, "k")):
        name = f"model.layers.{i}.self_attn.{role}_norm.weight"
        per_head = g.op("Reshape", [x, g.const([0, 0, heads, d])])
        gamma = weights.get(name) + (1.0 if spec.gemma else 0.0)
        normed.append(g.op("Reshape", [rms_norm(g, per_head, gamma, name, spec.rms_norm_eps, standard),
                                       g.const([0, 0, heads * d])]))
    return g.op("Concat", [*normed, v], axis=-1)


def gqa_attention(seqlens_k: str, total_len: str, positions: str, ropes: dict, kv_cache: bool):
    """Attention as onnxruntime's fused GroupQueryAttention (rotary embedding inside the op)."""
    def attend(g: GraphBuilder, spec: ModelSpec, qkv: str, i: int) -> str:
        rotary = [rope["rotary_dim"] for rope in spec.ropes.values()]
        if any(dim < spec.head_dim and dim % 16 for dim in rotary):
            raise ExportError(f"GroupQueryAttention rotates a part of each head only in multiples of 16 dims, and "
                              f"this model rotates {rotary[0]} of {spec.head_dim}; export with --attention standard")
        return fused(g, spec, qkv, i)

    def fused(g: GraphBuilder, spec: ModelSpec, qkv: str, i: int) -> str:
        p = f"model.layers.{i}"
        past = [PAST_KEY % i, PAST_VALUE % i] if kv_cache else ["", ""]
        present = [PRESENT_KEY % i, PRESENT_VALUE % i] if kv_cache else [f"{p}.key", f"{p}.value"]
        extra = {"scale": spec.attn_scale} if spec.attn_scale else {}
        if spec.attn_softcap:
            extra["softcap"] = spec.attn_softcap
        if window(spec, i):  # checked against transformers' sliding-window mask on CPU
            extra["local_window_size"] = window(spec, i)
        rope = ropes[spec.layer_types[i]] if spec.layer_types else next(iter(ropes.values()))
        return g.op("GroupQueryAttention", [qkv, "", "", *past, seqlens_k, total_len, *rope, positions],
                    [f"{p}.attn_out", *present], domain="com.microsoft", num_heads=spec.num_heads,
                    kv_num_heads=spec.num_kv_heads, do_rotary=1, rotary_interleaved=0, **extra)[0]
    return attend


def standard_attention(g: GraphBuilder, spec: ModelSpec, ropes: dict):
    """Attention in plain ONNX ops, which TensorRT can take whole. The new tokens' K/V are scattered into
    the max-context KV buffer at their positions (past and present share it, as with GQA); queries attend
    to the first `total` rows under a causal mask (and a sliding window where the layer has one). Softmax
    runs in fp32."""
    total = g.op("Gather", [g.op("Shape", [ATTENTION_MASK]), g.const(1)])
    past = g.op("Sub", [total, g.op("Gather", [g.op("Shape", [INPUT_IDS]), g.const(1)])])
    positions = g.op("Range", [past, total, g.const(1)])  # [S]
    tables = {rope: tuple(g.op("Gather", [table, positions]) for table in rope) for rope in set(ropes.values())}
    keys_at = g.op("Range", [g.const(0), total, g.const(1)])  # [T]
    queries_at = g.op("Unsqueeze", [positions, g.const([1])])  # [S, 1]
    causal = g.op("LessOrEqual", [keys_at, queries_at])  # [S, T]
    biases = {}

    def bias(seen: int | None) -> str:
        if seen not in biases:
            allowed = causal if seen is None else g.op("And", [causal, g.op("Greater", [
                keys_at, g.op("Sub", [queries_at, g.const(seen)])])])
            biases[seen] = g.op("Where", [allowed, g.const(0.0, np.float32), g.const(-1e30, np.float32)])
        return biases[seen]

    scatter_at = g.op("Reshape", [positions, g.const([1, 1, -1, 1])])
    kv_rows = g.op("Unsqueeze", [total, g.const([0])])
    h, kv, d = spec.num_heads, spec.num_kv_heads, spec.head_dim

    def rotate(x: str, cos: str, sin: str, rotary: int) -> str:  # rotate-half over the first `rotary` dims
        half = rotary // 2
        x1, x2, rest = g.op("Split", [x, g.const([half, half, d - rotary])], 3, axis=-1) if rotary < d else \
            (*g.op("Split", [x, g.const([half, half])], 2, axis=-1), None)
        turned = [g.op("Sub", [g.op("Mul", [x1, cos]), g.op("Mul", [x2, sin])]),
                  g.op("Add", [g.op("Mul", [x2, cos]), g.op("Mul", [x1, sin])])]
        return g.op("Concat", turned + ([rest] if rest else []), axis=-1)

    def heads(x: str, count: int) -> str:  # [1, S, count*D] -> [1, count, S, D]
        return g.op("Transpose", [g.op("Reshape", [x, g.const([0, 0, count, d])])], perm=[0, 2, 1, 3])

    def cached(new: str, i: int, past_name: str, present_name: str) -> str:
        """Write the new rows into the cache; return rows 0..total as [1, KV, 1, T, D]."""
        at = g.op("Expand", [scatter_at, g.op("Shape", [new])])
        g.op("ScatterElements", [past_name % i, at, new], [present_name % i], axis=2)
        rows = g.op("Slice", [present_name % i, g.const([0]), kv_rows, g.const([2])])
        return g.op("Unsqueeze", [rows, g.const([2])])

    def attend(g: GraphBuilder, spec: ModelSpec, qkv: str, i: int) -> str:
        kind = spec.layer_types[i] if spec.layer_types else next(iter(ropes))
        cos, sin = tables[ropes[kind]]
        rotary = spec.ropes[kind]["rotary_dim"]
        q, k, v = g.op("Split", [qkv, g.const([h * d, kv * d, kv * d])], 3, axis=-1)
        q = g.op("Mul", [rotate(heads(q, h), cos, sin, rotary), g.const(spec.attn_scale or 1 / np.sqrt(d), g.np_dtype)])
        keys = cached(rotate(heads(k, kv), cos, sin, rotary), i, PAST_KEY, PRESENT_KEY)
        values = cached(heads(v, kv), i, PAST_VALUE, PRESENT_VALUE)
        grouped = g.op("Reshape", [q, g.const([0, kv, h // kv, -1, d])])  # head h reads kv head h // (h/kv)
        scores = g.op("Cast", [g.op("MatMul", [grouped, g.op("Transpose", [keys], perm=[0, 1, 2, 4, 3])])],
                      to=TensorProto.FLOAT)
        if spec.attn_softcap:
            scores = soft_cap(g, scores, spec.attn_softcap)
        probs = g.op("Cast", [g.op("Softmax", [g.op("Add", [scores, bias(window(spec, i))])], axis=-1)],
                     to=g.onnx_dtype)
        out = g.op("Reshape", [g.op("MatMul", [probs, values]), g.const([0, h, -1, d])])
        return g.op("Reshape", [g.op("Transpose", [out], perm=[0, 2, 1, 3]), g.const([0, 0, h * d])])
    return attend


def soft_cap(g: GraphBuilder, x: str, cap: float, output: str | None = None) -> str:
    """cap * tanh(x / cap), in x's dtype (fp32 where used)."""
    capped = g.op("Tanh", [g.op("Div", [x, g.const(cap, np.float32)])])
    return g.op("Mul", [capped, g.const(cap, np.float32)], [output] if output else 1)


def activation(g: GraphBuilder, spec: ModelSpec, x: str, standard: bool) -> str:
    """SiLU, or Gemma's tanh-approximated GELU (FastGelu; spelled out in plain ops for TensorRT)."""
    if not spec.gemma:
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if not standard:
        return g.op("FastGelu", [x], domain="com.microsoft")
    cube = g.op("Mul", [x, g.op("Mul", [x, x])])
    inner = g.op("Mul", [g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715, g.np_dtype)])]),
                         g.const(math.sqrt(2 / math.pi), g.np_dtype)])
    return g.op("Mul", [g.op("Mul", [x, g.const(0.5, g.np_dtype)]),
                        g.op("Add", [g.op("Tanh", [inner]), g.const(1.0, g.np_dtype)])])


def feed_forward(g: GraphBuilder, spec: ModelSpec, weights, x: str, p: str, standard: bool) -> str:
    if spec.packed_projections:
        both = linear(g, x, weights, [f"{p}.mlp.gate_up_proj"], spec.mlp_bias)
        gate, up = g.op("Split", [both, g.const([spec.intermediate_size] * 2)], 2, axis=-1)
    else:
        gate, up = (linear(g, x, weights, [f"{p}.mlp.{t}_proj"], spec.mlp_bias) for t in ("gate", "up"))
    return linear(g, g.op("Mul", [activation(g, spec, gate, standard), up]), weights, [f"{p}.mlp.down_proj"],
                  spec.mlp_bias)


def transformer(g: GraphBuilder, spec: ModelSpec, weights, embeds: str, attend, standard: bool = False) -> str:
    """The decoder layers and final norm over input embeddings; returns the normed hidden states.
    `attend(g, spec, qkv, layer)` is the attention; `standard` spells the norms in plain ONNX ops.
    Gemma's norms scale by (1 + w) and also wrap the attention's and the MLP's outputs."""
    offset = 1.0 if spec.gemma else 0.0

    def norm(x: str, residual: str | None, name: str) -> tuple[str, str]:
        return skip_norm(g, x, residual, weights.get(name) + offset, name, spec.rms_norm_eps, standard)

    x, residual = norm(embeds, None, "model.layers.0.input_layernorm.weight")
    for i in range(spec.num_layers):
        p = f"model.layers.{i}"
        with g.scoped(f"/model/layers.{i}/attn"):
            names = ["qkv"] if spec.packed_projections else ["q", "k", "v"]
            qkv = linear(g, x, weights, [f"{p}.self_attn.{t}_proj" for t in names], spec.qkv_bias)
            if spec.qk_norm:
                qkv = qk_normed(g, spec, qkv, i, weights, standard)
            attn = linear(g, attend(g, spec, qkv, i), weights, [f"{p}.self_attn.o_proj"], spec.o_bias)
        with g.scoped(f"/model/layers.{i}/norm"):
            if spec.gemma:
                attn = norm(attn, None, f"{p}.post_attention_layernorm.weight")[0]
            x, residual = norm(attn, residual, f"{p}.pre_feedforward_layernorm.weight" if spec.gemma else
                               f"{p}.post_attention_layernorm.weight")
        with g.scoped(f"/model/layers.{i}/mlp"):
            mlp = feed_forward(g, spec, weights, x, p, standard)
        with g.scoped(f"/model/layers.{i}/norm"):
            if spec.gemma:
                mlp = norm(mlp, None, f"{p}.post_feedforward_layernorm.weight")[0]
            x, residual = norm(mlp, residual, f"model.layers.{i + 1}.input_layernorm.weight"
                               if i + 1 < spec.num_layers else "model.norm.weight")
    return x


def finish_model(g: GraphBuilder, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                   helper.make_opsetid("com.microsoft", 1)],
                             producer_name="edgegen", ir_version=IR_VERSION)


def build_decoder(spec: ModelSpec, weights: Weights, dtype: str, max_context: int, latent_inputs: bool = False,
                  for_quantization: bool = False, attention: str = "gqa", topk: int = 0) -> onnx.ModelProto:
    """The decoder graph; with latent_inputs, positions flagged in `latent_mask` take their input
    embedding from `latent_embeds` instead of the embedding table (latent-memory RAG). A graph for
    quantization keeps its embedding table in fp16 and gives the LM head its own MatMul, which the
    quantizer then rewrites (a tied FusedMatMul head would stay full precision). attention="standard"
    builds the graph from plain ONNX ops only (no onnxruntime contrib ops), for TensorRT. topk > 0 adds each
    kept row's `topk` largest logits, their token ids and the row's log-sum-exp as outputs, so that a GPU
    need not copy whole logit rows to the host when the decision depends on those tokens only. (Raw logits,
    not log-probabilities: subtracting the log-sum-exp can round two nearly tied logits to one value.)"""
    standard = attention == "standard"
    g = GraphBuilder(dtype)
    kv, d = spec.num_kv_heads, spec.head_dim

    table = weights.get("model.embed_tokens.weight")
    if for_quantization:
        embed = g.weight("model.embed_tokens.weight", table, np.float16)
        embeds = g.op("Cast", [g.op("Gather", [embed, INPUT_IDS])], to=g.onnx_dtype)
    else:
        embed = g.weight("model.embed_tokens.weight", table)
        embeds = g.op("Gather", [embed, INPUT_IDS])
    if spec.gemma:  # Gemma's embedding module scales its rows (latents, being input embeddings, are not)
        embeds = g.op("Mul", [embeds, g.const(np.sqrt(spec.hidden_size), g.np_dtype)])
    if latent_inputs:
        flags = g.op("Unsqueeze", [LATENT_MASK, g.const([-1])])
        embeds = g.op("Where", [flags, LATENT_EMBEDS, embeds])
    # no position_ids: GroupQueryAttention takes the new tokens' positions from seqlens_k, as in genai's
    # graphs; its position_ids path made a decode step 3.5-8.5% slower on CPU
    ropes = rope_caches(g, spec, max_context)
    if standard:
        attend = standard_attention(g, spec, ropes)
    else:  # GroupQueryAttention reads lengths, not a mask: seqlens_k = total - 1, total = mask width
        seqlens_k = g.op("Cast", [g.op("Sub", [g.op("ReduceSum", [ATTENTION_MASK, g.const([1])], keepdims=0),
                                               g.const(1)])], to=TensorProto.INT32)
        total_len = g.op("Cast", [g.op("Gather", [g.op("Shape", [ATTENTION_MASK]), g.const(1)])],
                         to=TensorProto.INT32)
        attend = gqa_attention(seqlens_k, total_len, "", ropes, kv_cache=True)
    x = transformer(g, spec, weights, embeds, attend, standard)

    # only the last `logits_to_keep` positions reach the LM head: prefill needs one row, a block step a few
    start = g.op("Neg", [g.op("Reshape", [LOGITS_TO_KEEP, g.const([1])])])
    x = g.op("Slice", [x, start, g.const([np.iinfo(np.int64).max]), g.const([1])])
    tied = ties_embeddings(spec, weights)
    if tied and standard and not for_quantization:  # Gemm reads the table transposed, as FusedMatMul does
        rows = g.op("Gemm", [g.op("Reshape", [x, g.const([-1, spec.hidden_size])]), embed], transB=1)
        logits = g.op("Reshape", [rows, g.const([1, -1, spec.vocab_size])])
    elif tied and not for_quantization:
        logits = g.op("FusedMatMul", [x, embed], domain="com.microsoft", transB=1)
    else:
        head = table if tied else weights.get("lm_head.weight")
        logits = g.op("MatMul", [x, g.weight("lm_head.weight_T", head.T)])
    if spec.final_softcap:
        soft_cap(g, g.op("Cast", [logits], to=TensorProto.FLOAT), spec.final_softcap, LOGITS)
    else:
        g.op("Cast", [logits], [LOGITS], to=TensorProto.FLOAT)
    if topk:
        g.op("TopK", [LOGITS, g.const([topk])], [TOPK_LOGITS, TOPK_IDS], axis=-1)
        g.op("ReduceLogSumExp", [LOGITS], [LOGSUMEXP], axes=[-1], keepdims=0)

    kv_type = g.onnx_dtype
    past_shape = ["batch", kv, "past_sequence_length", d]
    inputs = [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence_length"]),
              helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "total_sequence_length"]),
              helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [])]
    if latent_inputs:
        inputs += [helper.make_tensor_value_info(LATENT_EMBEDS, g.onnx_dtype, ["batch", "sequence_length",
                                                                               spec.hidden_size]),
                   helper.make_tensor_value_info(LATENT_MASK, TensorProto.BOOL, ["batch", "sequence_length"])]
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", "logits_to_keep", spec.vocab_size])]
    if topk:
        outputs += [helper.make_tensor_value_info(name, dtype, ["batch", "logits_to_keep", topk])
                    for name, dtype in ((TOPK_IDS, TensorProto.INT64), (TOPK_LOGITS, TensorProto.FLOAT))]
        outputs.append(helper.make_tensor_value_info(LOGSUMEXP, TensorProto.FLOAT, ["batch", "logits_to_keep"]))
    for i in range(spec.num_layers):
        inputs += [helper.make_tensor_value_info(name % i, kv_type, past_shape) for name in (PAST_KEY, PAST_VALUE)]
        outputs += [helper.make_tensor_value_info(name % i, kv_type, ["batch", kv, "present_sequence_length", d])
                    for name in (PRESENT_KEY, PRESENT_VALUE)]
    return finish_model(g, "edgegen_decoder", inputs, outputs)


def ties_embeddings(spec: ModelSpec, weights: Weights) -> bool:
    """Whether the LM head is the embedding table."""
    return spec.tie_word_embeddings or "lm_head.weight" not in weights


def skip_norm(g: GraphBuilder, x: str, residual: str | None, gamma: np.ndarray, name: str, eps: float,
              standard: bool = False):
    """RMSNorm(x + residual) (of x alone without a residual); returns (normed, new residual). The fused
    contrib ops compute in fp32, and so does the plain-ops spelling."""
    weight = g.weight(name, gamma)
    if not standard:
        if residual is None:
            return g.op("SimplifiedLayerNormalization", [x, weight], epsilon=eps, axis=-1), x
        normed, summed = f"{name}.normed", f"{name}.residual"
        g.op("SkipSimplifiedLayerNormalization", [x, residual, weight], [normed, "", "", summed],
             domain="com.microsoft", epsilon=eps)
        return normed, summed
    summed = x if residual is None else g.op("Add", [x, residual])
    wide = g.op("Cast", [summed], to=TensorProto.FLOAT)
    variance = g.op("ReduceMean", [g.op("Mul", [wide, wide])], axes=[-1])
    scale = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [variance, g.const(eps, np.float32)])])])
    normed = g.op("Cast", [g.op("Mul", [wide, scale])], to=g.onnx_dtype)
    return g.op("Mul", [normed, weight]), summed
