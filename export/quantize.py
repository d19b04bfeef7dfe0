"""Weight quantization of an exported fp32 decoder with onnxruntime's own tools.

int8: dynamic quantization (int8 weights per tensor, activations quantized at run time: MatMulInteger);
cheap extra rows, so it suits block decoding. int4: weight-only MatMulNBits in blocks of 32; the
smallest and fastest for one token, but each extra row costs more on CPUs without VNNI.
"""
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import onnx

QUANTIZED_DTYPES = ("int8", "int4")
INT4_BLOCK = 32


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


def quantize(src: Path, out: Path, dtype: str, save_graph) -> None:
    """Quantize every MatMul of the graph at `src` (external data beside it) into `out`."""
    with root_logger_kept():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    if dtype == "int8":

        quantize_dynamic(src, out, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                         use_external_data_format=os.path.getsize(src) + data_size(src) > 1.8e9,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # past com.microsoft ops
        return
    quantizer = MatMulNBitsQuantizer(onnx.load(os.fspath(src)), block_size=INT4_BLOCK, is_symmetric=True,
                                     accuracy_level=4)  # int8 compute of the 4-bit weights, as genai's CPU builds
    quantizer.process()
    save_graph(fold_biases(quantizer.model.model), out)


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
