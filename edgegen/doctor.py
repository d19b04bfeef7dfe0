"""`edgegen doctor`: what this machine offers for inference, and whether a provider runs a model right.

The environment part reads the machine (onnxruntime build, CUDA/cuDNN/TensorRT libraries, GPU, Jetson
module and JetPack release, power mode) and names the install command for each missing piece. With a
model it is the conformance run every GPU gets verified by: greedy tokens of each decoding mode on the
chosen provider against the CPU, the cost curve, and decode speed per mode.
"""
import ctypes.util
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from .bench import BUILTIN_PROMPTS
from .runtime.errors import EdgegenError
from .runtime.pilot import CURVE_SIZES, CostCurve
from .runtime.providers import PROVIDERS, preload_gpu_libraries

JETPACK_OF_L4T = {"32": "4.x", "34": "5.0 (developer preview)", "35": "5.x", "36": "6.x", "38": "7.x"}
GPU_LIBRARIES = {"CUDA runtime": "cudart", "cuBLAS": "cublas", "cuDNN": "cudnn", "TensorRT": "nvinfer"}
MAX_NEW_TOKENS = 64


def read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def command_output(*args: str) -> str | None:
    if not shutil.which(args[0]):
        return None
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def loaded_libraries() -> set[str]:
    """Shared libraries mapped into this process (after onnxruntime preloaded its CUDA dependencies)."""
    maps = read("/proc/self/maps") or ""
    return {Path(line.split()[-1]).name for line in maps.splitlines() if ".so" in line}


def jetson() -> dict | None:
    """Module name, L4T release and JetPack generation, read from the files every L4T image has."""
    release = read("/etc/nv_tegra_release")
    model = read("/proc/device-tree/model")
    if not release and not (model and "jetson" in model.lower()):
        return None
    l4t = release.split(",")[0].split()[1].lstrip("R") if release and release.startswith("# R") else None
    return {"module": model, "l4t": release.split(",")[0].lstrip("# ") if release else None,
            "jetpack": JETPACK_OF_L4T.get(l4t or "", "unknown"), "power_mode": command_output("nvpmodel", "-q")}


def environment() -> dict:
    preload_gpu_libraries()
    loaded = loaded_libraries()
    libraries = {name: next((lib for lib in sorted(loaded) if lib.startswith(f"lib{stem}")), None)
                 or ctypes.util.find_library(stem) for name, stem in GPU_LIBRARIES.items()}
    gpu = command_output("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader")
    device = jetson()
    report = {"python": sys.version.split()[0], "machine": platform.machine(), "onnxruntime": ort.__version__,
              "providers": ort.get_available_providers(), "libraries": libraries, "gpu": gpu, "jetson": device}
    report["kind"] = "jetson" if device else "nvidia-gpu" if gpu else "cpu"
    report["missing"] = missing_pieces(report)
    return report


def missing_pieces(report: dict) -> list[str]:
    """Each missing piece with what installs it, for the kind of machine this is."""
    gpu_build = PROVIDERS["cuda"] in report["providers"]
    libs, tips = report["libraries"], []
    if report["kind"] == "jetson":
        jetpack = report["jetson"]["jetpack"]
        if not gpu_build:
            tips.append(f"onnxruntime-gpu for JetPack {jetpack}: install NVIDIA's Jetson wheel for it (PyPI has "
                        "no aarch64 GPU build); see the README, 'Install on Jetson'")
        if not libs["TensorRT"]:
            tips.append("TensorRT: it ships with JetPack: sudo apt install nvidia-jetpack (or nvidia-tensorrt)")
    elif report["kind"] == "nvidia-gpu":
        if not gpu_build:
            tips.append("onnxruntime-gpu: pip uninstall -y onnxruntime && pip install onnxruntime-gpu")
        if gpu_build and not (libs["CUDA runtime"] and libs["cuDNN"]):
            tips.append("CUDA and cuDNN libraries: pip install 'onnxruntime-gpu[cuda,cudnn]'")
        if not libs["TensorRT"]:
            tips.append("TensorRT (optional, for --provider tensorrt): pip install tensorrt")
    return tips


def first_divergence(reference, prompt_ids: list[int], expected: list[int], got: list[int]) -> dict | None:
    """Where two greedy continuations part, and by how much the reference preferred its own token there:
    a gap near zero is a near-tie that lower precision may flip."""
    index = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), None)
    if index is None:
        if len(expected) == len(got):
            return None
        index = min(len(expected), len(got))
        return {"index": index, "expected": expected[index:index + 1], "got": got[index:index + 1], "gap": None}
    engine = reference.engine
    engine.rewind(0)
    context = prompt_ids + expected[:index]
    logits = engine.logits(context, 1)[-1]
    engine.rewind(0)
    return {"index": index, "expected": expected[index], "got": got[index],
            "gap": float(logits[expected[index]] - logits[got[index]])}


def generate(model, prompt_ids: list[int], **options):
    return model.stream(prompt_ids, **options).run()


def conformance(model_dir: Path, provider: str, reference_dir: Path | None, threads: int | None,
                tie_gap: float = 0.0) -> dict:
    from . import load

    model = load(model_dir, provider=provider)
    reference = load(reference_dir or model_dir, provider="cpu", max_context=model.max_context, threads=threads)
    modes = ["ar", "verify"] + (["threshold"] if model.manifest.mask_token_id is not None else [])
    report = {"model": str(model_dir), "provider": model.engine.provider, "reference": str(reference_dir or model_dir),
              "dtype": model.manifest.weights or model.manifest.dtype, "attention": model.manifest.graph.attention,
              "max_context": model.max_context, "kv_cache_bytes": model.engine.kv_bytes, "modes": {}}
    # verify is lossless, so it must give the reference's AR tokens; threshold is lossy and its tokens depend on
    # the block size, which the pilot picks from each provider's costs: both sides run one fixed size
    block = {"block_size": model.manifest.block_size or 4}
    for mode in modes:
        tokens = seconds = 0.0
        mismatches = []
        for prompt in BUILTIN_PROMPTS:
            ids = model.encode_prompt(prompt, chat=True)
            options = {"mode": mode, "max_new_tokens": MAX_NEW_TOKENS, **(block if mode == "threshold" else {})}
            expected = generate(reference, ids, **{**options, "mode": "ar" if mode == "verify" else mode})
            got = generate(model, ids, **options)
            if got.stats.decode_tokens_per_s:
                tokens += got.stats.decode_tokens
                seconds += got.stats.decode_tokens / got.stats.decode_tokens_per_s
            divergence = first_divergence(reference, ids, expected.token_ids, got.token_ids)
            if divergence:
                mismatches.append({"prompt": prompt, **divergence})
        report["modes"][mode] = {"prompts": len(BUILTIN_PROMPTS), "equal": len(BUILTIN_PROMPTS) - len(mismatches),
                                 "decode_tokens": int(tokens),
                                 "decode_tokens_per_s": tokens / seconds if seconds else 0.0, "mismatches": mismatches}
    curve = CostCurve.measure(model.engine)
    report["cost_curve_ms"] = {size: round(s * 1000, 3) for size, s in zip(curve.sizes, curve.seconds)}
    report["tie_gap"] = tie_gap
    report["passed"] = all(m["gap"] is not None and abs(m["gap"]) <= tie_gap
                           for row in report["modes"].values() for m in row["mismatches"])
    return report


def print_environment(env: dict) -> None:
    print(f"python {env['python']} ({env['machine']}), onnxruntime {env['onnxruntime']}")
    print(f"providers: {', '.join(env['providers'])}")
    print("libraries: " + ", ".join(f"{name} {lib or 'not found'}" for name, lib in env["libraries"].items()))
    print(f"gpu: {env['gpu'] or 'none found (no nvidia-smi)'}")
    if env["jetson"]:
        j = env["jetson"]
        print(f"jetson: {j['module']}, {j['l4t']}, JetPack {j['jetpack']}, power mode {j['power_mode'] or 'unknown'}")
    for tip in env["missing"]:
        print(f"missing: {tip}")


def print_conformance(report: dict) -> None:
    print(f"\nmodel {report['model']} ({report['dtype']}, {report['attention']} attention) on {report['provider']}, "
          f"reference {report['reference']} on the CPU")
    print(f"KV cache: {report['kv_cache_bytes'] / 2**20:.1f} MiB for {report['max_context']} tokens")
    print(f"{'mode':<10}{'equal':>8}{'decode tok/s':>14}  first divergence")
    for mode, row in report["modes"].items():
        first = row["mismatches"][0] if row["mismatches"] else None
        where = "-" if not first else f"token {first['index']}: {first['got']} for {first['expected']}" + (
            f", reference logit gap {first['gap']:.3g}" if first["gap"] is not None else "")
        print(f"{mode:<10}{row['equal']:>4}/{row['prompts']:<3}{row['decode_tokens_per_s']:>14.1f}  {where}")
    curve = report["cost_curve_ms"]
    print("forward ms by new tokens: " + ", ".join(f"{size}: {ms:.3f}" for size, ms in curve.items()))
    ties = f" (divergences at reference logit gaps up to {report['tie_gap']} accepted)" if report["tie_gap"] else ""
    print("conformance: " + ("passed" + ties if report["passed"] else "FAILED (tokens differ from the CPU reference)"))


def run_doctor(args) -> int:
    env = environment()
    report = {"environment": env}
    if not args.json:
        print_environment(env)
    if args.model is not None:
        if args.reference is not None and not (args.reference / "edgegen.json").is_file():
            raise EdgegenError(f"--reference {args.reference} is not an edgegen model directory")
        report["conformance"] = conformance(args.model, args.provider, args.reference, args.threads, args.tie_gap)
        if not args.json:
            print_conformance(report["conformance"])
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if report.get("conformance", {}).get("passed", True) else 1


def add_doctor(commands) -> None:
    p = commands.add_parser("doctor", help="check this machine's GPU setup, and a model's tokens on a provider",
                            description="Report onnxruntime, its providers, CUDA/cuDNN/TensorRT, the GPU and Jetson "
                                        "release; with MODEL, compare greedy tokens of every decoding mode on "
                                        "--provider against the CPU and measure the cost curve "
                                        f"({', '.join(map(str, CURVE_SIZES))} new tokens). Exits 1 on any mismatch.")
    p.add_argument("model", type=Path, nargs="?", help="an exported model directory (omit for the environment only)")
    p.add_argument("--provider", default="auto", choices=["auto", *PROVIDERS])
    p.add_argument("--reference", type=Path,
                   help="model directory whose CPU tokens are expected (default: MODEL itself; give the fp32 export "
                        "to check an fp16 one)")
    p.add_argument("--threads", type=int, help="CPU threads for the reference")
    p.add_argument("--tie-gap", type=float, default=0.0,
                   help="accept a divergence where the reference preferred its token by at most this many logits "
                        "(a near-tie lower precision may flip; default 0: every divergence fails)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_doctor)
