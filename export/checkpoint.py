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

# model_type -> the architecture whose graph we build (MARS releases are their base under another name)
SUPPORTED_MODEL_TYPES = {"qwen2": "qwen2", "a2d-qwen2": "qwen2", "qwen3": "qwen3", "a2d-qwen3": "qwen3",
                         "llama": "llama", "mistral": "mistral", "phi3": "phi3", "gemma2": "gemma2",
                         "gemma3_text": "gemma3_text"}
GEMMA = ("gemma2", "gemma3_text")
ROPE_TYPES = ("default", "linear", "llama3", "longrope")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
OPTIONAL_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja", "generation_config.json")
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
                      "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                      "BOOL": np.bool_}
FULL, SLIDING = "full_attention", "sliding_attention"


@dataclass
class ModelSpec:
    """The architecture facts the graph builder and the manifest need, normalized across config formats.
    One graph builder serves every architecture; these fields are where they differ."""
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
    ropes: dict  # layer type -> its rotary embedding: rope_theta, rope_type and the scaling parameters
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    source_dtype: str
    layer_types: list = field(default_factory=list)  # FULL or SLIDING per layer
    sliding_window: int | None = None  # a SLIDING layer's query sees this many tokens, itself included
    qk_norm: bool = False  # RMSNorm over each head of q and k before the rotary embedding (Qwen3, Gemma3)
    packed_projections: bool = False  # one qkv_proj and one gate_up_proj weight (Phi-3)
    gemma: bool = False  # (1 + w) norms, norms after attention and MLP too, scaled embeddings, tanh-GELU MLP
    attn_scale: float | None = None  # softmax scale when it is not head_dim ** -0.5
    attn_softcap: float | None = None  # attention scores become cap * tanh(scores / cap)
    final_softcap: float | None = None  # and so do the logits
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
    if model_type == "gemma3" and isinstance(config.get("text_config"), dict):
        raise ExportError("this is Gemma 3's image-and-text checkpoint; export its text model: save "
                          "Gemma3ForCausalLM.from_pretrained(SRC) (the language model alone) and export that")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(f"unsupported model_type {model_type!r} in {src / 'config.json'}; "
                          f"supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))}")
    arch = SUPPORTED_MODEL_TYPES[model_type]
    activation = config.get("hidden_activation") or config.get("hidden_act") or "silu"
    if activation != ("gelu_pytorch_tanh" if arch in GEMMA else "silu"):
        raise ExportError(f"unsupported activation {activation!r} for {model_type}; edgegen builds the MLP that "
                          f"{model_type} was released with")
    num_heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // num_heads
    types = layer_types(config, arch)
    gemma = arch in GEMMA
    return ModelSpec(
        model_type=model_type,
        architecture=arch,
        num_layers=config["num_hidden_layers"],
        hidden_size=config["hidden_size"],
        num_heads=num_heads,
        num_kv_heads=config.get("num_key_value_heads") or num_heads,
        head_dim=head_dim,
        intermediate_size=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        ropes={kind: rope_parameters(config, kind, arch, head_dim) for kind in set(types)},
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        tie_word_embeddings=config.get("tie_word_embeddings", gemma),
        qkv_bias=arch == "qwen2" or bool(config.get("attention_bias")),
        o_bias=arch in ("llama", "mistral") and bool(config.get("attention_bias")),
        mlp_bias=bool(config.get("mlp_bias")),
        source_dtype=str(config.get("dtype") or config.get("torch_dtype") or "float32"),
        layer_types=types,
        sliding_window=config.get("sliding_window") if SLIDING in types else None,
        qk_norm=arch in ("qwen3", "gemma3_text"),
        packed_projections=arch == "phi3",
        gemma=gemma,
        attn_scale=config["query_pre_attn_scalar"] ** -0.5 if gemma else None,
        attn_softcap=config.get("attn_logit_softcapping") if gemma else None,
        final_softcap=config.get("final_logit_softcapping") if gemma else None,
        block_size=block_size or trained_block_size(src, config),
    )


def layer_types(config: dict, arch: str) -> list[str]:
    """Which layers attend within a sliding window: from the config's layer_types (transformers 5.x), else
    as each architecture's transformers code decides."""
    count, window = config["num_hidden_layers"], config.get("sliding_window")
    if config.get("layer_types"):
        types = list(config["layer_types"])
        if len(types) < count or set(types) - {FULL, SLIDING}:  # more than the layers: the weights check says
            raise ExportError(f"config.json's layer_types must name {FULL} or {SLIDING} for each of the "
                              f"{count} layers, not {types}")
        return types
    if arch == "gemma2":
        sliding = [i % 2 == 0 for i in range(count)]
    elif arch == "gemma3_text":
        sliding = [(i + 1) % config.get("sliding_window_pattern", 6) != 0 for i in range(count)]
    elif arch in ("qwen2", "qwen3"):
        sliding = [bool(config.get("use_sliding_window")) and i >= config.get("max_window_layers", count)
                   for i in range(count)]
    else:
        sliding = [arch in ("mistral", "phi3") for _ in range(count)]
    return [SLIDING if is_sliding and window else FULL for is_sliding in sliding]


def rope_parameters(config: dict, layer_type: str, arch: str, head_dim: int) -> dict:
    """One layer type's rotary embedding from transformers 5.x rope_parameters (flat, or by layer type as
    in Gemma 3) or 4.x rope_theta / rope_scaling / rope_local_base_freq."""
    given = config.get("rope_parameters") or {}
    if isinstance(given.get(layer_type), dict):
        rope = dict(given[layer_type])
    else:
        local = arch == "gemma3_text" and layer_type == SLIDING  # Gemma 3's local layers: own base, no scaling
        rope = {key: value for key, value in given.items() if not isinstance(value, dict)}
        if config.get("rope_scaling") and not local:
            rope.update(config["rope_scaling"])
        default_theta = config.get("rope_local_base_freq", 10000.0) if local else \
            config.get("rope_theta", 1e6 if arch == "gemma3_text" else 10000.0)
        rope.setdefault("rope_theta", default_theta)
    kind = rope.get("rope_type", rope.get("type", "default"))
    rope_type = "longrope" if kind == "su" else kind  # Phi-3's first releases called it su
    if rope_type not in ROPE_TYPES:
        raise ExportError(f"unsupported rope_type {rope_type!r}; supported: {', '.join(ROPE_TYPES)}")
    rotary_dim = int(head_dim * rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)))
    if rope_type == "longrope":
        rope.setdefault("original_max_position_embeddings", config.get("original_max_position_embeddings"))
        rope.setdefault("factor", config.get("max_position_embeddings", 1) / rope["original_max_position_embeddings"])
    return {**rope, "rope_type": rope_type, "rope_theta": float(rope["rope_theta"]), "rotary_dim": rotary_dim}


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
        packed = "model.layers.0.self_attn.qkv_proj.weight"
        q_rows = (self.shape(packed)[0] - 2 * spec.num_kv_heads * spec.head_dim if packed in self else
                  self.shape("model.layers.0.self_attn.q_proj.weight")[0]) if layers else None
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
