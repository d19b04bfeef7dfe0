"""`edgegen export --from-onnx`: an optimum decoder export as it is, plus the edgegen.json that loading it would
otherwise infer (and hash the graph for) every time."""
import os
import shutil
from pathlib import Path

from ..runtime.manifest import Manifest
from ..runtime.optimum_graph import graph_files, infer_manifest
from .checkpoint import OPTIONAL_TOKENIZER_FILES, TOKENIZER_FILES
from .errors import ExportError
from .exporter import MIN_CONTEXT, staged_output


def export_from_onnx(src: Path, out: Path, force: bool = False, max_context: int | None = None) -> Manifest:
    """Write OUT: SRC's graph (with its external data), config and tokenizer files, hard-linked where OUT is on
    the same filesystem and copied where not, and the inferred manifest."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ExportError(f"optimum export directory {src} does not exist")
    manifest = infer_manifest(src)
    if max_context is not None and not MIN_CONTEXT <= max_context <= manifest.max_context:
        raise ExportError(f"--max-context must be within {MIN_CONTEXT}..{manifest.max_context} (the model's "
                          f"max_position_embeddings), got {max_context}")
    manifest.max_context = max_context or manifest.max_context
    names = graph_files(src, manifest.graph.file) + [name for name in ("config.json",) + TOKENIZER_FILES +
                                                     OPTIONAL_TOKENIZER_FILES if (src / name).is_file()]
    with staged_output(out, src, force) as staging:
        for name in names:
            link_or_copy(src / name, staging / name)
        manifest.save(staging)
    return manifest


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(src, dst)
