"""Weight quantization of an exported fp32 decoder with onnxruntime's own tools.

int8: dynamic quantization (int8 weights per tensor, activations quantized at run time: MatMulInteger);
cheap extra rows, so it suits block decoding. int4: weight-only MatMulNBits in blocks of 32; the
smallest and fastest for one token, but each extra row costs more on CPUs without VNNI.
"""
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

QUANTIZED_DTYPES = ("int8", "int4")
INT4_BLOCK = 32
EMBEDDING, HEAD = "model.embed_tokens.weight", "lm_head.weight_T"  # as the graph builder names them


@contextmanager
def root_logger_kept():
    """Importing onnxruntime.quantization configures the root logger at INFO (a line per node it looks at, and
    every other library's INFO too); put it back as it was."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers


def quantize(src: Path, out: Path, dtype: str, save_graph, tied: bool) -> None:
    """Quantize every MatMul of the graph at `src` (external data beside it) into `out`; a model that ties its
    embedding to its LM head (`tied`) then reads its embeddings from the quantized head weights too."""
    with root_logger_kept():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    if dtype == "int8":

        quantize_dynamic(src, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         use_external_data_format=os.path.getsize(src) + data_size(src) > 1.8e9,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # past com.microsoft ops
        model = onnx.load(os.fspath(out))
        save_graph(share_embedding(model) if tied else model, out)  # with its weights beside it when large
        return
    quantizer = MatMulNBitsQuantizer(onnx.load(os.fspath(src)), block_size=INT4_BLOCK, is_symmetric=True,
                                     accuracy_level=4)  # int8 compute of the 4-bit weights, as genai's CPU builds
    quantizer.process()
    model = fold_biases(quantizer.model.model)
    save_graph(share_embedding(model) if tied else model, out)


def share_embedding(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace the fp16 embedding table (Gather, Cast) by reads of the quantized LM head weights: int4 blocks
    through GatherBlockQuantized, as onnxruntime-genai does, or int8 columns through DequantizeLinear. The
    table was the largest tensor of a quantized export (272 MB at Qwen2.5-0.5B's 151,936 x 896)."""
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    gather = next(node for node in graph.node if node.op_type == "Gather" and node.input[0] == EMBEDDING)
    cast = next(node for node in graph.node if node.op_type == "Cast" and node.input[0] == gather.output[0])
    ids, embeds = gather.input[1], cast.output[0]
    if HEAD + "_Q4" in weights:
        rows, blocks, blob = weights[HEAD + "_Q4"].dims
        if weights[EMBEDDING].dims[1] != blocks * INT4_BLOCK:  # padded blocks would widen the embeddings
            return model
        graph.initializer.append(numpy_helper.from_array(np.array([rows, blocks * blob]), HEAD + "_rows"))
        reads = [helper.make_node("Reshape", [HEAD + "_Q4", HEAD + "_rows"], [HEAD + "_packed_rows"],
                                  name="/model/embed_tokens/Reshape"),
                 helper.make_node("GatherBlockQuantized", [HEAD + "_packed_rows", ids, HEAD + "_scales"], [embeds],
                                  name="/model/embed_tokens/GatherBlockQuantized", domain="com.microsoft", bits=4,
                                  block_size=INT4_BLOCK, gather_axis=0, quantize_axis=1)]
    else:  # int8 per tensor, stored [hidden, vocab]: gather columns, dequantize, then put hidden last
        quantized, columns = HEAD + "_quantized", "/model/embed_tokens/columns"
        reads = [helper.make_node("Gather", [quantized, ids], [columns], name="/model/embed_tokens/Gather", axis=1),
                 helper.make_node("DequantizeLinear", [columns, HEAD + "_scale", HEAD + "_zero_point"],
                                  [columns + "_real"], name="/model/embed_tokens/DequantizeLinear"),
                 helper.make_node("Transpose", [columns + "_real"], [embeds], name="/model/embed_tokens/Transpose",
                                  perm=[1, 2, 0])]
    at = list(graph.node).index(gather)
    for node in (gather, cast):
        graph.node.remove(node)
    for offset, node in enumerate(reads):
        graph.node.insert(at + offset, node)
    graph.initializer.remove(weights[EMBEDDING])
    return model


def fold_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move each constant bias Add behind a MatMulNBits into the op's own bias input: one kernel less per
    projection, which at one token per step is a measurable share of the time."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    removed = []
    for node in graph.node:
        users = consumers.get(node.output[0], [])
        if node.op_type != "MatMulNBits" or len(users) != 1 or users[0].op_type != "Add" or len(node.input) > 4:
            continue
        add = users[0]
        bias = next((name for name in add.input if name in constants), None)
        if bias is None:
            continue
        node.input.extend([""] * (5 - len(node.input)) + [bias])  # A, B, scales, zero_points, g_idx, bias
        node.output[0] = add.output[0]
        removed.append(add)
    for add in removed:
        graph.node.remove(add)
    return model


def data_size(src: Path) -> int:
    data = Path(f"{src}.data")
    return data.stat().st_size if data.is_file() else 0
