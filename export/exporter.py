"""`edgegen export`: checkpoint directory -> model.onnx + tokenizer files + edgegen.json."""
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from tokenizers import Tokenizer

from ..runtime.engine import Engine
from ..runtime.manifest import MANIFEST_NAME, GraphInterface, Manifest
from ..runtime.pilot import CostCurve
from ..runtime.tokenizer import special_token_ids
from .checkpoint import (
    OPTIONAL_TOKENIZER_FILES,
    TOKENIZER_FILES,
    ModelSpec,
    Weights,
    read_model_spec,
    require_file,
)
from .errors import ExportError
from .graph import LATENT_EMBEDS, LATENT_MASK, LOGSUMEXP, TOPK_IDS, TOPK_LOGITS, build_decoder, ties_embeddings
from .quantize import QUANTIZED_DTYPES, quantize
from .verify import check_bounds, compare_with_transformers

# above this, weights go to model.onnx.data: onnxruntime then reads them without the protobuf parser's copy,
# which took 0.5 s and 140 MB of peak memory more to load Qwen2.5-0.5B's int4 graph (and files stop at 2 GiB)
EXTERNAL_DATA_BYTES = 64 << 20
UNQUANTIZED = "unquantized.onnx"  # a quantized export's graph before quantization, verified then deleted
MIN_CONTEXT = 16
ATTENTIONS = ("gqa", "standard")
MAX_TOPK = 1024  # top-k outputs are meant to be small next to a vocabulary row


class Progress:
    """Numbered stage lines on stderr with the time each stage took."""

    def __init__(self, stages: int, quiet: bool = False):
        self.stages, self.done, self.quiet = stages, 0, quiet
        self.started = time.perf_counter()

    def stage(self, text: str) -> None:
        self.done += 1
        if not self.quiet:
            print(f"[{self.done}/{self.stages}] {text} ({time.perf_counter() - self.started:.1f}s)",
                  file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if not self.quiet:
            print(f"      {text}", file=sys.stderr, flush=True)


def prepare_output(out: Path, src: Path, force: bool, marker: str = MANIFEST_NAME) -> Path:
    """Refuse to clobber anything but an earlier export (a directory holding `marker`); return a fresh
    staging directory beside OUT."""
    out, src = out.resolve(), src.resolve()
    if out == src or src in out.parents or out in src.parents:
        raise ExportError(f"output {out} overlaps the checkpoint {src}; choose an output directory elsewhere")
    if out.exists():
        if not force:
            raise ExportError(f"output {out} already exists; pass --force to replace it, or choose another directory")
        if not out.is_dir() or (any(out.iterdir()) and not (out / marker).is_file()):
            raise ExportError(f"output {out} exists and is not an edgegen model directory; --force only replaces "
                              "earlier exports, so choose another directory")
    remove_abandoned(out)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def remove_abandoned(out: Path) -> None:
    """Delete the staging and old directories that killed exports to OUT left (their process is gone)."""
    for leftover in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = leftover.name.rpartition("-")
        if not kind.endswith((".partial", ".old")) or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


@contextmanager
def staged_output(out: Path, src: Path, force: bool, marker: str = MANIFEST_NAME) -> Iterator[Path]:
    """A fresh staging directory beside OUT (see prepare_output), swapped in for OUT when the block completes and
    removed when it fails: OUT is never left half-written."""
    staging = prepare_output(out, src, force, marker)
    try:
        yield staging
        replace_directory(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_directory(staging: Path, out: Path) -> None:
    """Swap the finished export in; the previous export is removed only after the new one is in place."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def save_graph(model: onnx.ModelProto, path: Path) -> None:
    """Save a graph (its weights beside it when large); onnx appends to an existing data file, so none is kept."""
    Path(f"{path}.data").unlink(missing_ok=True)
    external = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, os.fspath(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=1024)


def export_model(src: Path, out: Path, dtype: str = "fp32", max_context: int | None = None,
                 block_size: int | None = None, force: bool = False, verify: bool = True,
                 quiet: bool = False, latent_inputs: bool = False, attention: str = "gqa", topk: int = 0) -> Manifest:
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ExportError(f"checkpoint directory {src} does not exist")
    if dtype not in ("fp32", "fp16") + QUANTIZED_DTYPES:
        raise ExportError(f"unsupported --dtype {dtype!r}; choose fp32, fp16, int8 or int4")
    if attention not in ATTENTIONS:
        raise ExportError(f"unsupported --attention {attention!r}; choose {' or '.join(ATTENTIONS)}")
    if block_size is not None and block_size < 2:
        raise ExportError(f"--block-size must be at least 2 (a MARS block predicts the next tokens), got {block_size}")
    if not 0 <= topk <= MAX_TOPK:
        raise ExportError(f"--topk must be within 0..{MAX_TOPK} (0: no top-k outputs), got {topk}")
    quantized = dtype in QUANTIZED_DTYPES
    compute = "fp32" if quantized else dtype  # activations and KV cache
    progress = Progress(4 if verify else 3, quiet)
    if not verify and not quiet:
        print("edgegen: warning: --no-verify: the graph is not checked against transformers, so a graph that "
              "computes the wrong model would go unnoticed", file=sys.stderr)
    spec = read_model_spec(src, block_size)
    for name in TOKENIZER_FILES:
        require_file(src, name, "edgegen needs the fast-tokenizer files; create them with transformers: "
                                "AutoTokenizer.from_pretrained(SRC).save_pretrained(SRC)")
    weights = Weights(src)
    weights.check_against(spec)  # with or without --no-verify
    max_context = max_context or spec.max_position_embeddings
    if max_context < MIN_CONTEXT:
        raise ExportError(f"--max-context must be at least {MIN_CONTEXT}, got {max_context}")
    with staged_output(out, src, force) as staging:
        progress.stage(f"read {spec.model_type} checkpoint: {spec.num_layers} layers, hidden {spec.hidden_size}, "
                       f"vocab {spec.vocab_size}, weights {spec.source_dtype}")
        model = build_decoder(spec, weights, compute, max_context, latent_inputs, quantized, attention,
                              min(topk, spec.vocab_size))
        progress.stage(f"built {compute} graph: {len(model.graph.node)} nodes")
        if quantized:
            save_graph(model, staging / UNQUANTIZED)
            del model
            quantize(staging / UNQUANTIZED, staging / "model.onnx", dtype, save_graph, ties_embeddings(spec, weights))
            progress.note(f"quantized the MatMul weights to {dtype}")
        else:
            save_graph(model, staging / "model.onnx")
            del model
        for name in TOKENIZER_FILES + OPTIONAL_TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, staging / name)
        manifest = make_manifest(src, spec, weights, compute, max_context)
        manifest.weights = dtype if quantized else ""  # set only when it differs from dtype
        manifest.graph.attention = attention
        if latent_inputs:
            manifest.graph.latent_embeds, manifest.graph.latent_mask = LATENT_EMBEDS, LATENT_MASK
        if topk:
            manifest.graph.topk = min(topk, spec.vocab_size)
            manifest.graph.topk_ids, manifest.graph.topk_logits, manifest.graph.logsumexp = TOPK_IDS, TOPK_LOGITS, \
                LOGSUMEXP
        progress.stage(f"saved {staging.name.split('.partial')[0].lstrip('.')}/model.onnx")
        if verify:
            manifest.verification = compare_with_transformers(src, staging, manifest, spec,
                                                              UNQUANTIZED if quantized else None)
            check_bounds(manifest.verification, dtype)
            progress.stage(f"verified against transformers: max |logit diff| "
                           f"{manifest.verification['max_abs_logit_diff']:.3g} over "
                           f"{manifest.verification['tokens']} tokens ({dtype} graph vs fp32 reference)")
        for leftover in staging.glob(UNQUANTIZED + "*"):
            leftover.unlink()
        if verify:
            manifest.cost_curve = measure_cost_curve(staging, manifest)
        manifest.save(staging)
    if manifest.mask_token_id is None:
        progress.note("no <|mask|> token in the tokenizer: this model runs in AR mode only")
    return manifest


def measure_cost_curve(model_dir: Path, manifest: Manifest) -> dict:
    """Forward latency for 1..32 new tokens on this machine's CPU, all threads: what `block_size="auto"`
    plans with when it runs on the same kind of machine (elsewhere it measures its own)."""
    engine = Engine(model_dir, manifest, provider="cpu", max_context=min(manifest.max_context, 256))
    return CostCurve.measure(engine).record(engine, None)


def make_manifest(src: Path, spec: ModelSpec, weights: Weights, dtype: str, max_context: int) -> Manifest:
    from .. import __version__

    return Manifest(
        architecture=spec.architecture,
        num_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_kv_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        hidden_size=spec.hidden_size,
        vocab_size=spec.vocab_size,
        block_size=spec.block_size,
        max_context=max_context,
        dtype=dtype,
        graph=GraphInterface(position_ids=None),
        source={"path": str(src.resolve()), "model_type": spec.model_type, "dtype": spec.source_dtype,
                "weights_sha256": weights.sha256(), "exported_by": f"edgegen {__version__}"},
        **special_token_ids(src, Tokenizer.from_file(str(src / "tokenizer.json")),
                            "re-download or re-save the checkpoint"),
    )

