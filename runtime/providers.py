"""Which onnxruntime execution provider runs a graph, and with what options.

'auto' means CUDA where it works, else CPU. TensorRT is taken only when asked for (or when the
model holds an engine from `edgegen build-engine`): a first TensorRT load builds engines for minutes,
which nobody should meet by surprise. A provider whose libraries fail to load is reported, never
silently replaced by the CPU.
"""
import os
from pathlib import Path

import onnxruntime as ort

from .errors import EdgegenError

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
CPU, CUDA, TENSORRT = PROVIDERS["cpu"], PROVIDERS["cuda"], PROVIDERS["tensorrt"]
MAX_THREADS = 1024
INSTALL_HINT = ("on a desktop NVIDIA GPU: pip install onnxruntime-gpu; on a Jetson: the onnxruntime-gpu wheel "
                "NVIDIA builds for its JetPack (README, 'Install on Jetson'); `edgegen doctor` shows what is missing")


def resolve(name: str) -> list[str]:
    """The providers to try in order for a provider name ('auto', 'cpu', 'cuda', 'tensorrt' or a full name)."""
    available = ort.get_available_providers()
    if name == "auto":
        return [p for p in (CUDA, CPU) if p in available]
    provider = PROVIDERS.get(name.lower(), name)
    if provider not in PROVIDERS.values():
        raise EdgegenError(f"unknown execution provider {name!r}; choose one of auto, {', '.join(PROVIDERS)}")
    if provider not in available:
        raise EdgegenError(f"execution provider {name!r} is not available in this onnxruntime build (it has "
                           f"{', '.join(available)}); {INSTALL_HINT}")
    return [provider]


def preload_gpu_libraries() -> None:
    """Let onnxruntime find CUDA/cuDNN installed as pip packages (onnxruntime >= 1.21 has preload_dlls)."""
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:  # noqa: BLE001, S110 - a system-wide CUDA install needs no preloading; the session tells
            pass


def provider_chain(provider: str, trt_options: dict | None, cuda_options: dict | None) -> list:
    """What InferenceSession gets: TensorRT falls back to CUDA for the ops it cannot take, CUDA to the CPU."""
    if provider == TENSORRT:
        return [(TENSORRT, trt_options or {}), (CUDA, cuda_options or {}), CPU]
    if provider == CUDA:
        return [(CUDA, cuda_options or {}), CPU]
    return [CPU]


def make_session(path: Path, name: str, threads: int | None, trt_options: dict | None = None,
                 cuda_options: dict | None = None, fold_constants: bool = True) -> tuple[ort.InferenceSession, str]:
    """A session on the first provider of `name` that starts; returns it and that provider. `fold_constants`
    False keeps a constant subgraph as it is, as for weights shared through a Reshape (folding would copy them)."""
    if not path.is_file():
        raise EdgegenError(f"missing file {path}; re-export the model")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 0 < threads <= MAX_THREADS):
        raise EdgegenError(f"threads must be a whole number within 1..{MAX_THREADS}, not {threads!r}; leave it "
                           "unset for one per core")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per physical core
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    candidates, failures = resolve(name), []
    for provider in candidates:
        if provider != CPU:
            preload_gpu_libraries()
        try:
            session = ort.InferenceSession(os.fspath(path), options, providers=provider_chain(provider, trt_options,
                                                                                           cuda_options),
                                           disabled_optimizers=[] if fold_constants else ["ConstantFolding"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises plain RuntimeErrors for missing libraries
            failures.append(f"{provider}: {str(e).splitlines()[0][:300]}")
            continue
        if session.get_providers()[0] == provider:  # onnxruntime quietly drops a provider that fails to load
            return session, provider
        failures.append(f"{provider}: its libraries did not load (CUDA, cuDNN or TensorRT missing or mismatched)")
    if candidates == [CPU]:  # the CPU provider always loads: the file itself is the problem
        raise EdgegenError(f"{path} could not be loaded ({failures[0].split(': ', 1)[1]}); the file is damaged, cut "
                           "short or from a newer edgegen: re-export the model")
    raise EdgegenError(f"no execution provider could run {path.name} ({'; '.join(failures)}); {INSTALL_HINT}")
