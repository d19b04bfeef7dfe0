"""Decoders exported by optimum (its text-generation-with-past task), as published: the manifest edgegen needs,
inferred from the graph's inputs and outputs, config.json and the tokenizer files.

Such a graph takes `input_ids`, `attention_mask`, `position_ids` and `past_key_values.{i}.key/value`, and returns
the logits of every new token and `present.{i}.key/value`, the past followed by the new tokens' KV.
"""
import hashlib
import itertools
import os
from pathlib import Path

import onnxruntime as ort
from tokenizers import Tokenizer as FastTokenizer

from .errors import EdgegenError
from .jsonl import read_json_object
from .manifest import MANIFEST_NAME, GraphInterface, Manifest
from .tokenizer import special_token_ids

GRAPH_FILES = ("model.onnx", "onnx/model.onnx")  # optimum's own layout; the onnx-community repositories'
KV_DTYPES = {"tensor(float)": "fp32", "tensor(float16)": "fp16"}
CONFIG_INTS = ("hidden_size", "num_attention_heads", "vocab_size", "max_position_embeddings")
FIX = "export the model with `optimum-cli export onnx --task text-generation-with-past`, or export its checkpoint " \
      "with `edgegen export`"


def infer_manifest(directory: Path) -> Manifest:
    """The manifest of an optimum export in `directory` (which has no edgegen.json); an EdgegenError naming the fix
    for a directory that is not one."""
    graph, config_path = find_graph(directory), directory / "config.json"
    if graph is None:
        raise EdgegenError(f"{directory} is not an edgegen model directory (no {MANIFEST_NAME}) nor an optimum export "
                           f"(no {' or '.join(GRAPH_FILES)}); create one from a checkpoint with: edgegen export "
                           "CHECKPOINT_DIR OUT_DIR")
    if not config_path.is_file():
        raise EdgegenError(f"{directory / graph} has no config.json beside it, where edgegen reads the model's sizes "
                           f"and special tokens; copy the config.json of the checkpoint it was exported from into "
                           f"{directory}")
    if not (directory / "tokenizer.json").is_file():
        raise EdgegenError(f"{directory} has no tokenizer.json; save the tokenizer beside the graph with transformers: "
                           "AutoTokenizer.from_pretrained(CHECKPOINT).save_pretrained(DIR)")
    config = read_json_object(config_path, "use the config.json of the checkpoint the graph was exported from")
    sizes = config_ints(config, config_path)
    inputs, outputs = graph_signature(directory / graph)
    names, layers = graph_interface(graph, inputs, outputs, directory / graph)
    kv = inputs[names.past_key % 0]
    tokenizer = FastTokenizer.from_file(os.fspath(directory / "tokenizer.json"))
    return Manifest(
        architecture=str(config.get("model_type", "unknown")), num_layers=layers,
        num_attention_heads=sizes["num_attention_heads"], num_kv_heads=kv.shape[1], head_dim=kv.shape[3],
        hidden_size=sizes["hidden_size"], vocab_size=sizes["vocab_size"], block_size=None,
        max_context=sizes["max_position_embeddings"], dtype=KV_DTYPES[kv.type], graph=names,
        source={"path": str(directory.resolve()), "model_type": config.get("model_type"),
                "weights_sha256": files_sha256(directory, graph_files(directory, graph)),
                "exported_by": "optimum (manifest inferred by edgegen)"},
        **special_token_ids(directory, tokenizer, "fix the tokenizer files, or save them again with transformers"))


def find_graph(directory: Path) -> str | None:
    return next((name for name in GRAPH_FILES if (directory / name).is_file()), None)


def graph_files(directory: Path, graph: str) -> list[str]:
    """The graph and its external-data files (model.onnx_data, model.onnx.data, ...), relative to `directory`."""
    path = directory / graph
    return sorted(str(file.relative_to(directory)) for file in path.parent.iterdir()
                  if file.name.startswith(path.name) and file.is_file())


def files_sha256(directory: Path, names: list[str]) -> str:
    """One hash of the files' contents, the graph's identity for the caches keyed by weights."""
    digest = hashlib.sha256()
    for name in names:
        with open(directory / name, "rb") as file:
            while chunk := file.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def config_ints(config: dict, path: Path) -> dict:
    wrong = [key for key in CONFIG_INTS if isinstance(config.get(key), bool) or not isinstance(config.get(key), int)]
    if wrong:
        raise EdgegenError(f"{path} has no whole-number {', '.join(wrong)}, which edgegen reads the model's sizes "
                           "from; use the config.json of the checkpoint the graph was exported from")
    return {key: config[key] for key in CONFIG_INTS}


def graph_signature(path: Path) -> tuple[dict, dict]:
    """The graph's inputs and outputs (name -> onnxruntime NodeArg), read by a session that optimizes nothing."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises plain RuntimeErrors
        raise EdgegenError(f"{path} could not be loaded ({str(e).splitlines()[0][:300]}); the file is damaged or "
                           f"cut short: {FIX}") from e
    return {arg.name: arg for arg in session.get_inputs()}, {arg.name: arg for arg in session.get_outputs()}


def graph_interface(graph: str, inputs: dict, outputs: dict, path: Path) -> tuple[GraphInterface, int]:
    """The names edgegen binds and the layer count, once the graph is checked to be an optimum decoder."""
    names = GraphInterface(file=graph, position_ids="position_ids" if "position_ids" in inputs else None,
                           logits_to_keep=None, attention="standard", kv_shared_buffer=False)
    layers = next(layer for layer in itertools.count() if names.past_key % layer not in inputs)
    if not layers:
        raise EdgegenError(f"{path} takes no {names.past_key % 0}: it was exported without its KV cache; {FIX}")
    past = [name % layer for layer in range(layers) for name in (names.past_key, names.past_value)]
    present = [name % layer for layer in range(layers) for name in (names.present_key, names.present_value)]
    unknown = sorted(set(inputs) - {names.input_ids, names.attention_mask, names.position_ids, *past})
    missing = [name for name in [names.input_ids, names.attention_mask, *past] if name not in inputs] + \
              [name for name in [names.logits, *present] if name not in outputs]
    problems = [f"inputs edgegen does not feed: {', '.join(unknown)}"] * bool(unknown) + \
               [f"missing: {', '.join(missing)}"] * bool(missing)
    kv = inputs[past[0]]
    if len(kv.shape) != 4 or not all(isinstance(size, int) for size in kv.shape[1::2]) or kv.type not in KV_DTYPES:
        problems.append(f"{past[0]} is {kv.type} {kv.shape}, not float or float16 [batch, kv_heads, past, head_dim]")
    if problems:
        raise EdgegenError(f"{path} is not a decoder as optimum exports them ({'; '.join(problems)}); {FIX}")
    return names, layers
