"""Build the decoder ONNX graph directly from checkpoint weights (no tracing).

One graph serves prefill, AR steps and multi-token block steps (S > 1 on a non-empty past).
Attention is onnxruntime's fused GroupQueryAttention, the op onnxruntime-genai uses: its
past and present KV can share one preallocated max-context buffer, so the runtime appends
KV in place and drops mask-token KV by passing a shorter attention_mask.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..runtime.manifest import GraphInterface
from .checkpoint import ModelSpec, Weights

OPSET, IR_VERSION = 17, 8  # what onnxruntime >= 1.14 (JetPack 5 builds included) and TensorRT 8.6+ read
ONNX_DTYPES = {"fp32": (TensorProto.FLOAT, np.float32), "fp16": (TensorProto.FLOAT16, np.float16)}

NAMES = GraphInterface()  # the interface the manifest records for the runtime
INPUT_IDS, ATTENTION_MASK = NAMES.input_ids, NAMES.attention_mask
LOGITS_TO_KEEP, LOGITS = NAMES.logits_to_keep, NAMES.logits
PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE = NAMES.past_key, NAMES.past_value, NAMES.present_key, \
    NAMES.present_value
LATENT_EMBEDS, LATENT_MASK = "latent_embeds", "latent_mask"


def rope_inv_freq(spec: ModelSpec) -> np.ndarray:
    """Rotary inverse frequencies, computed in float32 like transformers' rope init functions."""
    d = spec.head_dim
    inv_freq = 1.0 / (np.float32(spec.rope_theta) ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
    scaling = spec.rope_scaling or {}
    if scaling.get("rope_type") == "linear":
        inv_freq = inv_freq / np.float32(scaling["factor"])
    elif scaling.get("rope_type") == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        wavelen = 2 * np.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        inv_freq = np.where(medium, smoothed, scaled)
    return inv_freq.astype(np.float32)


class GraphBuilder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, dtype: str):
        self.onnx_dtype, self.np_dtype = ONNX_DTYPES[dtype]
        self.nodes, self.initializers = [], []
        self.count = 0

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
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{op_type}_{self.count}",
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


def rope_caches(g: GraphBuilder, spec: ModelSpec, length: int) -> tuple[str, str]:
    freqs = np.outer(np.arange(length, dtype=np.float32), rope_inv_freq(spec))
    return g.weight("rope_cos", np.cos(freqs)), g.weight("rope_sin", np.sin(freqs))


def transformer(g: GraphBuilder, spec: ModelSpec, weights, embeds: str, seqlens_k: str, total_len: str,
                positions: str, rope: tuple[str, str], kv_cache: bool) -> str:
    """The decoder layers and final norm over input embeddings; returns the normed hidden states.
    With kv_cache, each layer reads and writes the graph's past/present KV tensors."""
    eps = spec.rms_norm_eps
    residual = embeds
    x = g.op("SimplifiedLayerNormalization", [residual, g.weight(
        "model.layers.0.input_layernorm.weight", weights.get("model.layers.0.input_layernorm.weight"))],
        epsilon=eps, axis=-1)
    for i in range(spec.num_layers):
        p = f"model.layers.{i}"
        qkv = linear(g, x, weights, [f"{p}.self_attn.{t}_proj" for t in "qkv"], spec.qkv_bias)
        past = [PAST_KEY % i, PAST_VALUE % i] if kv_cache else ["", ""]
        present = [PRESENT_KEY % i, PRESENT_VALUE % i] if kv_cache else [f"{p}.key", f"{p}.value"]
        attn = g.op("GroupQueryAttention", [qkv, "", "", *past, seqlens_k, total_len, *rope, positions],
                    [f"{p}.attn_out", *present], domain="com.microsoft", num_heads=spec.num_heads,
                    kv_num_heads=spec.num_kv_heads, do_rotary=1, rotary_interleaved=0)[0]
        attn = linear(g, attn, weights, [f"{p}.self_attn.o_proj"], spec.o_bias)
        x, residual = skip_norm(g, attn, residual, weights.get(f"{p}.post_attention_layernorm.weight"),
                                f"{p}.post_attention_layernorm.weight", eps)
        gate, up = (linear(g, x, weights, [f"{p}.mlp.{t}_proj"], spec.mlp_bias) for t in ("gate", "up"))
        mlp = linear(g, g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up]), weights,
                     [f"{p}.mlp.down_proj"], spec.mlp_bias)
        next_norm = f"model.layers.{i + 1}.input_layernorm.weight" if i + 1 < spec.num_layers else "model.norm.weight"
        x, residual = skip_norm(g, mlp, residual, weights.get(next_norm), next_norm, eps)
    return x


def finish_model(g: GraphBuilder, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                   helper.make_opsetid("com.microsoft", 1)],
                             producer_name="edgegen", ir_version=IR_VERSION)


def build_decoder(spec: ModelSpec, weights: Weights, dtype: str, max_context: int,
                  latent_inputs: bool = False, for_quantization: bool = False) -> onnx.ModelProto:
    """The decoder graph; with latent_inputs, positions flagged in `latent_mask` take their input
    embedding from `latent_embeds` instead of the embedding table (latent-memory RAG). A graph for
    quantization keeps its embedding table in fp16 and gives the LM head its own MatMul, which the
    quantizer then rewrites (a tied FusedMatMul head would stay full precision)."""
    g = GraphBuilder(dtype)
    kv, d = spec.num_kv_heads, spec.head_dim

    # GroupQueryAttention reads lengths, not a mask: seqlens_k = total - 1, total = mask width
    seqlens_k = g.op("Cast", [g.op("Sub", [g.op("ReduceSum", [ATTENTION_MASK, g.const([1])], keepdims=0),
                                           g.const(1)])], to=TensorProto.INT32)
    total_len = g.op("Cast", [g.op("Gather", [g.op("Shape", [ATTENTION_MASK]), g.const(1)])],
                     to=TensorProto.INT32)
    table = weights.get("model.embed_tokens.weight")
    if for_quantization:
        embed = g.weight("model.embed_tokens.weight", table, np.float16)
        embeds = g.op("Cast", [g.op("Gather", [embed, INPUT_IDS])], to=g.onnx_dtype)
    else:
        embed = g.weight("model.embed_tokens.weight", table)
        embeds = g.op("Gather", [embed, INPUT_IDS])
    if latent_inputs:
        flags = g.op("Unsqueeze", [LATENT_MASK, g.const([-1])])
        embeds = g.op("Where", [flags, LATENT_EMBEDS, embeds])
    # no position_ids: GroupQueryAttention takes the new tokens' positions from seqlens_k, as in genai's
    # graphs; its position_ids path made a decode step 3.5-8.5% slower on CPU
    x = transformer(g, spec, weights, embeds, seqlens_k, total_len, "", rope_caches(g, spec, max_context),
                    kv_cache=True)

    # only the last `logits_to_keep` positions reach the LM head: prefill needs one row, a block step a few
    start = g.op("Neg", [g.op("Reshape", [LOGITS_TO_KEEP, g.const([1])])])
    x = g.op("Slice", [x, start, g.const([np.iinfo(np.int64).max]), g.const([1])])
    tied = spec.tie_word_embeddings or "lm_head.weight" not in weights
    if tied and not for_quantization:
        logits = g.op("FusedMatMul", [x, embed], domain="com.microsoft", transB=1)
    else:
        head = table if tied else weights.get("lm_head.weight")
        logits = g.op("MatMul", [x, g.weight("lm_head.weight_T", head.T)])
    g.op("Cast", [logits], [LOGITS], to=TensorProto.FLOAT)

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
    for i in range(spec.num_layers):
        inputs += [helper.make_tensor_value_info(name % i, kv_type, past_shape) for name in (PAST_KEY, PAST_VALUE)]
        outputs += [helper.make_tensor_value_info(name % i, kv_type, ["batch", kv, "present_sequence_length", d])
                    for name in (PRESENT_KEY, PRESENT_VALUE)]
    return finish_model(g, "edgegen_decoder", inputs, outputs)


def skip_norm(g: GraphBuilder, x: str, residual: str, gamma: np.ndarray, name: str, eps: float):
    """RMSNorm(x + residual) fused with the residual add; returns (normed, new residual)."""
    g.count += 1
    normed, summed = f"{name}.normed", f"{name}.residual"
    g.op("SkipSimplifiedLayerNormalization", [x, residual, g.weight(name, gamma)], [normed, "", "", summed],
         domain="com.microsoft", epsilon=eps)
    return normed, summed
