"""Read a Hugging Face checkpoint directory: config, safetensors weights and tokenizer files.

Weights are read straight from the safetensors byte layout with NumPy (bf16 included),
so a checkpoint can be exported without loading it into torch first.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ExportError

# model_type -> architecture of the graph we build (MARS releases are plain Qwen2 under another name)
SUPPORTED_MODEL_TYPES = {"qwen2": "qwen2", "a2d-qwen2": "qwen2", "llama": "llama"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja", "generation_config.json")
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
                      "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                      "BOOL": np.bool_}


@dataclass
class ModelSpec:
    """The architecture facts the graph builder and the manifest need, normalized across config formats."""
    model_type: str
    architecture: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    source_dtype: str
    block_size: int | None = None
    extra: dict = field(default_factory=dict)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ExportError(f"{path} is not valid JSON ({e}); re-download or re-save the checkpoint") from e


def require_file(src: Path, name: str, why: str) -> Path:
    path = src / name
    if not path.is_file():
        raise ExportError(f"missing file {path}: {why}")
    return path


def read_model_spec(src: Path, block_size: int | None = None) -> ModelSpec:
    """Parse config.json written by transformers 4.x or 5.x into a ModelSpec."""
    config = read_json(require_file(src, "config.json", "a Hugging Face checkpoint directory needs config.json"))
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(f"unsupported model_type {model_type!r} in {src / 'config.json'}; "
                          f"supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}")
    if config.get("use_sliding_window"):
        raise ExportError("sliding-window attention (use_sliding_window: true) is not supported yet; "
                          "set use_sliding_window to false if the model was trained without it")
    rope = dict(config.get("rope_parameters") or {})  # transformers 5.x
    legacy_scaling = config.get("rope_scaling")  # transformers 4.x
    if legacy_scaling:
        rope.update(legacy_scaling)
    rope_theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
        raise ExportError(f"unsupported rope_type {rope_type!r}; supported: default, linear, llama3")
    num_heads = config["num_attention_heads"]
    arch = SUPPORTED_MODEL_TYPES[model_type]
    return ModelSpec(
        model_type=model_type,
        architecture=arch,
        num_layers=config["num_hidden_layers"],
        hidden_size=config["hidden_size"],
        num_heads=num_heads,
        num_kv_heads=config.get("num_key_value_heads") or num_heads,
        head_dim=config.get("head_dim") or config["hidden_size"] // num_heads,
        intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        rope_theta=float(rope_theta),
        rope_scaling=None if rope_type == "default" else {**rope, "rope_type": rope_type},
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        tie_word_embeddings=config.get("tie_word_embeddings", False),
        qkv_bias=arch == "qwen2" or config.get("attention_bias", False),
        o_bias=arch == "llama" and config.get("attention_bias", False),
        mlp_bias=config.get("mlp_bias", False),
        source_dtype=str(config.get("dtype") or config.get("torch_dtype") or "float32"),
        block_size=block_size or trained_block_size(src, config),
    )


def trained_block_size(src: Path, config: dict) -> int | None:
    """MARS block size from the config, else from the model's name (e.g. MARS-Qwen2.5-0.5B-blk4)."""
    for key in ("block_size", "mars_block_size"):
        if isinstance(config.get(key), int):
            return config[key]
    for name in (config.get("_name_or_path", ""), src.resolve().name):
        match = re.search(r"blk[-_]?(\d+)", str(name), re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


class SafetensorsFile:
    """Zero-copy view of one .safetensors file, validated against its own header."""

    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ExportError(f"corrupt safetensors file {path}: shorter than its 8-byte header length")
            header_len = int.from_bytes(head, "little")
            if header_len > size - 8:
                raise ExportError(f"corrupt or truncated safetensors file {path}: header says {header_len} bytes "
                                  f"but the file has {size}; re-download it")
            try:
                header = json.loads(f.read(header_len))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ExportError(f"corrupt safetensors file {path}: unreadable header ({e})") from e
        header.pop("__metadata__", None)
        self.data_start = 8 + header_len
        self.tensors = header
        data_size = size - self.data_start
        for name, info in header.items():
            dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
            if dtype is None:
                raise ExportError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')}")
            begin, end = info["data_offsets"]
            expected = int(np.prod(info["shape"], dtype=np.int64)) * np.dtype(dtype).itemsize
            if end - begin != expected:
                raise ExportError(f"corrupt safetensors file {path}: tensor {name} has {end - begin} bytes, "
                                  f"its shape needs {expected}")
            if end > data_size:
                raise ExportError(f"incomplete safetensors file {path}: tensor {name} ends at byte {end} "
                                  f"but the file holds {data_size} data bytes; re-download it")
        self._map = np.memmap(path, dtype=np.uint8, mode="r") if header else None

    def read(self, name: str) -> np.ndarray:
        info = self.tensors[name]
        begin, end = info["data_offsets"]
        raw = self._map[self.data_start + begin:self.data_start + end]
        if info["dtype"] == "BF16":  # bf16 is the upper half of an fp32
            return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])
        return raw.view(SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])


class Weights:
    """All tensors of a checkpoint, single-file or sharded, read on demand as float32."""

    def __init__(self, src: Path):
        index_path = src / "model.safetensors.index.json"
        if index_path.is_file():
            weight_map = read_json(index_path).get("weight_map", {})
            shard_names = sorted(set(weight_map.values()))
            for shard in shard_names:
                require_file(src, shard, f"it is listed in {index_path.name}; the sharded checkpoint is incomplete")
        elif (src / "model.safetensors").is_file():
            shard_names = ["model.safetensors"]
        else:
            raise ExportError(f"missing file {src / 'model.safetensors'} (or model.safetensors.index.json with its "
                              "shards): export needs the weights in safetensors format")
        self.files = [SafetensorsFile(src / name) for name in shard_names]
        self.location = {name: f for f in self.files for name in f.tensors}

    def __contains__(self, name: str) -> bool:
        return name in self.location

    def shape(self, name: str) -> list[int]:
        return self.location[name].tensors[name]["shape"]

    def check_against(self, spec: "ModelSpec") -> None:
        """The config must describe these weights: layer count, embedding table and attention sizes."""
        layers = {int(m.group(1)) for name in self.location if (m := re.match(r"model\.layers\.(\d+)\.", name))}
        embedding = self.shape("model.embed_tokens.weight") if "model.embed_tokens.weight" in self else None
        q_rows = self.shape("model.layers.0.self_attn.q_proj.weight")[0] if layers else None
        problems = [
            (layers != set(range(spec.num_layers)),
             f"config.json says {spec.num_layers} layers, the weights hold layers {sorted(layers)[:3]}..."
             f"{sorted(layers)[-1:] if layers else ''} ({len(layers)})"),
            (embedding != [spec.vocab_size, spec.hidden_size],
             f"config.json says vocab {spec.vocab_size} x hidden {spec.hidden_size}, the embedding table is "
             f"{embedding}"),
            (q_rows is not None and q_rows != spec.num_heads * spec.head_dim,
             f"config.json says {spec.num_heads} heads of {spec.head_dim}, q_proj has {q_rows} rows"),
        ]
        wrong = [message for bad, message in problems if bad]
        if wrong:
            raise ExportError(f"the checkpoint's config does not match its weights: {'; '.join(wrong)}; fix "
                              "config.json or use the checkpoint it belongs to")

    def get(self, name: str) -> np.ndarray:
        if name not in self.location:
            raise ExportError(f"incomplete checkpoint: tensor {name} is missing from the safetensors files")
        return self.location[name].read(name).astype(np.float32)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for f in self.files:
            with f.path.open("rb") as stream:
                while chunk := stream.read(1 << 24):
                    digest.update(chunk)
        return digest.hexdigest()
