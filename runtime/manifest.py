"""edgegen.json: what the exporter knows about a model directory and the runtime needs to run it."""
import json
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import EdgegenError
from .jsonl import read_json_object

MANIFEST_NAME = "edgegen.json"
FORMAT_VERSION = 1


@dataclass
class GraphInterface:
    """Input/output names of the decoder graph; KV tensors are [batch, kv_heads, seq, head_dim] (BNSH)."""
    file: str = "model.onnx"
    input_ids: str = "input_ids"
    position_ids: str | None = "position_ids"  # None: the graph takes positions from the attention mask, as
    # exports do now; earlier exports take this input
    attention_mask: str = "attention_mask"
    logits_to_keep: str | None = "logits_to_keep"  # None: logits come back for every new token (optimum's graphs)
    logits: str = "logits"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    latent_embeds: str | None = None  # with latent inputs: [batch, seq, hidden] vectors replacing embeddings
    latent_mask: str | None = None  # [batch, seq] bool, True where latent_embeds is used
    topk: int = 0  # with top-k outputs: how many of each kept row's most likely tokens they hold
    topk_ids: str | None = None  # [batch, logits_to_keep, topk] int64, most likely first
    topk_logits: str | None = None  # [batch, logits_to_keep, topk] float32, their logits
    logsumexp: str | None = None  # [batch, logits_to_keep] float32, log-sum-exp of each whole logit row
    attention: str = "gqa"  # gqa: onnxruntime's GroupQueryAttention; standard: plain ONNX ops TensorRT takes whole
    kv_layout: str = "BNSH"
    kv_shared_buffer: bool = True  # past and present may be bound to one max-context buffer; False: the present
    # is a new tensor, the past plus the new tokens' KV (optimum's graphs)


@dataclass
class Manifest:
    architecture: str
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    eos_token_ids: list[int]
    pad_token_id: int | None
    bos_token_id: int | None
    mask_token_id: int | None  # None: the model has no <|mask|> token and runs in AR mode only
    block_size: int | None  # block size the model was MARS-trained with
    max_context: int
    dtype: str  # activations and KV cache
    weights: str = ""  # weight precision when it differs: int8 or int4 (quantized MatMuls)
    source: dict = field(default_factory=dict)
    graph: GraphInterface = field(default_factory=GraphInterface)
    verification: dict = field(default_factory=dict)
    cost_curve: dict = field(default_factory=dict)  # forward latency by new tokens, as measured at export
    format_version: int = FORMAT_VERSION

    def save(self, directory: Path) -> None:
        (Path(directory) / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "Manifest":
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            from .optimum_graph import infer_manifest  # it builds a Manifest, so it cannot be imported above

            return infer_manifest(Path(directory))
        fix = "re-export the model (edgegen export ... --force)"
        data = read_json_object(path, fix)
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise EdgegenError(f"{path} has format_version {version}, this edgegen reads {FORMAT_VERSION}; {fix}")
        graph = data.get("graph") or {}
        if not isinstance(graph, dict):
            raise EdgegenError(f"{path} does not match the edgegen manifest format (graph is not an object); {fix}")
        manifest = typed(cls, {**data, "graph": typed(GraphInterface, graph, path, fix, "graph.")}, path, fix)
        graph = (Path(directory) / manifest.graph.file).resolve()
        if not graph.is_relative_to(Path(directory).resolve()):
            raise EdgegenError(f"{path} names a graph outside the model directory ({manifest.graph.file}); {fix}")
        return manifest


def fits(value, annotation) -> bool:
    """Whether a loaded JSON value has a field's declared type (int | None, list[int], ...)."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if option is type(None) and value is None or option in (int, float) and isinstance(value, int) \
                and not isinstance(value, bool) or option is float and isinstance(value, float):
            return True
        origin = typing.get_origin(option) or option
        if origin not in (int, float, type(None)) and isinstance(value, origin) and (
                origin is not list or all(isinstance(item, typing.get_args(option)[0]) for item in value)):
            return True
    return False


def typed(cls, data: dict, path: Path, fix: str, prefix: str = ""):
    """A dataclass from a JSON object, every field of its declared type, or a clear error naming the fields."""
    try:
        made = cls(**data)
    except TypeError as e:
        raise EdgegenError(f"{path} does not match the format edgegen reads ({e}); {fix}") from e
    types_ = typing.get_type_hints(cls)
    wrong = [prefix + name for name, value in vars(made).items() if not fits(value, types_[name])]
    if wrong:
        raise EdgegenError(f"{path} has values of the wrong type for {', '.join(wrong)}; {fix}")
    return made
