"""Where edgegen keeps what it measures or builds on this machine (cost curves, TensorRT engines):
$EDGEGEN_CACHE, else $XDG_CACHE_HOME/edgegen, else ~/.cache/edgegen."""
import os
from pathlib import Path


def cache_dir() -> Path:
    if os.environ.get("EDGEGEN_CACHE"):
        return Path(os.environ["EDGEGEN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgegen"
