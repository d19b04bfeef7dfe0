"""`edgegen build-engine`: build a model's TensorRT engine once, on the device, as an EPContext model."""
import sys
import time
from pathlib import Path

from .models import DEFAULT_MODEL
from .runtime.engine import Engine
from .runtime.errors import EdgegenError
from .runtime.manifest import Manifest
from .runtime.tensorrt import ENGINE_FILE, ENGINE_INFO, dump_options, require_tensorrt, write_engine_info


def build_engine(model_dir: Path, max_context: int | None = None, force: bool = False) -> Engine:
    """Build the engines (running every step shape once) and save them beside the graph; later loads with
    provider 'tensorrt' or 'auto' and the same context take them as they are."""
    require_tensorrt()
    manifest = Manifest.load(model_dir)
    existing = [model_dir / name for name in (ENGINE_INFO, ENGINE_FILE) if (model_dir / name).exists()]
    if existing and not force:
        raise EdgegenError(f"{model_dir} already holds a TensorRT engine ({ENGINE_FILE}); pass --force to rebuild it")
    for path in existing:
        path.unlink()
    engine = Engine(model_dir, manifest, "tensorrt", max_context, trt_options=dump_options(model_dir))
    write_engine_info(model_dir, engine.max_context, engine.max_block_tokens)
    return engine


def run_build_engine(args) -> int:
    model_dir = args.model or DEFAULT_MODEL
    start = time.perf_counter()
    engine = build_engine(model_dir, args.max_context, args.force)
    print(f"built {model_dir / ENGINE_FILE} in {time.perf_counter() - start:.0f} s (max context {engine.max_context}, "
          f"steps of 1 to {engine.max_block_tokens} tokens); loads with --provider tensorrt or auto and this max "
          "context use it", file=sys.stderr)
    if engine.manifest.graph.attention == "gqa":
        print("note: GroupQueryAttention is not a TensorRT op, so attention runs on CUDA between several engines; "
              "a graph exported with --attention standard goes to TensorRT whole", file=sys.stderr)
    return 0


def add_build_engine(commands) -> None:
    p = commands.add_parser("build-engine", help="build a model's TensorRT engine on this device, once",
                            description="Build the TensorRT engine for MODEL on this device (minutes) and save it "
                                        f"beside the graph as {ENGINE_FILE}, an EPContext model, so later loads take "
                                        "seconds. Needs onnxruntime-gpu with TensorRT.")
    p.add_argument("model", type=Path, nargs="?", help="exported model directory (default: the bundled model)")
    p.add_argument("--max-context", type=int, help="KV cache length the engine is built for; loads must use the "
                                                   "same (default: min(2048, the export's))")
    p.add_argument("--force", action="store_true", help="replace an engine built before")
    p.set_defaults(run=run_build_engine)
