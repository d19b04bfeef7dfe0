"""Prompt KV saved on disk, so that a later process skips the prefill of a prompt prefix it has seen.

An entry is the keys and values of one prompt's tokens, in `.npy` files named by a hash of the model (weights,
graph, precision) and the tokens; `index.json` lists the entries' tokens. A new prompt takes the entry that
shares the longest prefix with it: under causal attention, the KV of a shared prefix is the same whatever
followed it. The directory is bounded: the least recently used entries go first. Entries that cannot be
read are ignored (and removed); the index is a cache of the files, rebuilt when damaged.
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .manifest import Manifest

MIN_TOKENS = 32  # shorter prompts prefill faster than an entry loads
INDEX = "index.json"


def model_key(manifest: Manifest) -> str:
    """Entries fit only the same weights, graph and precision."""
    m, graph = manifest, manifest.graph
    text = f"{m.source.get('weights_sha256')}-{m.dtype}-{m.weights}-{graph.attention}-{m.num_layers}-{m.max_context}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class PromptCache:
    def __init__(self, directory: Path, manifest: Manifest, max_bytes: int = 1 << 30):
        self.directory, self.max_bytes, self.model = Path(directory), max_bytes, model_key(manifest)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _index(self) -> dict:
        try:
            index = json.loads((self.directory / INDEX).read_bytes())
        except (OSError, ValueError):
            return {}
        return index if isinstance(index, dict) else {}

    def _write_index(self, index: dict) -> None:
        partial = self.directory / f"{INDEX}.{os.getpid()}.partial"
        partial.write_text(json.dumps(index))
        partial.replace(self.directory / INDEX)

    def best(self, prompt: list) -> tuple[int, str | None]:
        """(tokens shared with the prompt, entry) of the entry sharing the longest prefix; the last prompt token
        is never counted: its logits start the answer, so it is always fed."""
        best, name = 0, None
        for entry, info in self._index().items():
            usable = isinstance(info, dict) and info.get("model") == self.model and isinstance(info.get("tokens"), list)
            if not usable:
                continue
            tokens = info["tokens"]
            shared = next((i for i, (a, b) in enumerate(zip(tokens, prompt[:-1])) if a != b),
                          min(len(tokens), len(prompt) - 1))
            if shared > best:
                best, name = shared, entry
        return (best, name) if best >= MIN_TOKENS else (0, None)

    def load(self, entry: str, length: int) -> np.ndarray | None:
        """The first `length` tokens' KV of an entry; None (and the entry dropped) when it cannot be read."""
        path = self.directory / f"{entry}.npy"
        try:
            kv = np.load(path, mmap_mode="r")
            if kv.ndim != 4 or kv.shape[2] < length:
                raise ValueError(f"shape {kv.shape}")
            os.utime(path)  # recently used
            return np.array(kv[:, :, :length])
        except (OSError, ValueError):
            self._drop(entry)
            return None

    def save(self, tokens: list[int], kv: np.ndarray) -> None:
        if len(tokens) < MIN_TOKENS:
            return
        entry = hashlib.sha256(f"{self.model}:{tokens}".encode()).hexdigest()[:24]
        path = self.directory / f"{entry}.npy"
        partial = self.directory / f"{entry}.{os.getpid()}.partial.npy"
        np.save(partial, kv)
        partial.replace(path)
        index = self._index()
        index[entry] = {"model": self.model, "tokens": [int(t) for t in tokens]}
        self._write_index(self._evict(index))

    def _evict(self, index: dict) -> dict:
        """Drop the least recently used entries beyond max_bytes, and index rows whose file is gone."""
        files = sorted((p for p in self.directory.glob("*.npy") if ".partial" not in p.name),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        total = 0
        for path in files:
            total += path.stat().st_size
            if total > self.max_bytes:
                path.unlink(missing_ok=True)
        present = {p.stem for p in self.directory.glob("*.npy")}
        return {entry: info for entry, info in index.items() if entry in present}

    def _drop(self, entry: str) -> None:
        (self.directory / f"{entry}.npy").unlink(missing_ok=True)
        index = self._index()
        if index.pop(entry, None) is not None:
            self._write_index(index)
