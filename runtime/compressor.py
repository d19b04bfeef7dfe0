"""The latent-memory compressor on the device: evidence -> (retrieval vector, generator latent), query -> vector."""
from pathlib import Path

import numpy as np

from .errors import EdgegenError
from .jsonl import read_json_object
from .providers import make_session
from .tokenizer import Tokenizer

MEMORY_MANIFEST = "memory.json"
MAX_CHARS_PER_TOKEN = 16


class Compressor:
    def __init__(self, path: str | Path, provider: str = "auto", threads: int | None = None):
        self.path = Path(path)
        manifest = self.path / MEMORY_MANIFEST
        if not manifest.is_file():
            raise EdgegenError(f"{self.path} is not a compressor directory (no {MEMORY_MANIFEST}); create one with "
                               "`edgegen export-memory`")
        self.info = read_json_object(manifest, "re-export it with `edgegen export-memory`")
        self.compress, self.provider = make_session(self.path / "compress.onnx", provider, threads)
        self.query, _ = make_session(self.path / "query.onnx", self.provider, threads)
        self.tokenizer = Tokenizer(self.path)

    @property
    def identity(self) -> dict:
        """What a latent store records to refuse vectors from another compressor."""
        return {"checksum": self.info["checksum"], "retrieval_dim": self.info["retrieval_dim"],
                "generator_hidden": self.info["generator_hidden"]}

    def _ids(self, text: str) -> np.ndarray:
        """Raw text with the tokenizer's own special tokens, cut to the trained evidence length."""
        limit = self.info["max_evidence_tokens"]  # a token is rarely over 16 characters: skip tokenizing the rest
        ids = self.tokenizer.encode(text[:limit * MAX_CHARS_PER_TOKEN], add_special_tokens=True)[:limit]
        return np.array([ids], np.int64)

    def embed_evidence(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval vectors [N, R] (unit length) and generator latents [N, G], one item at a time:
        padding a batch would move the [MEM] position and change the latents."""
        rows = [self.compress.run(["retrieval", "projected"], {"input_ids": self._ids(t)}) for t in texts]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

    def embed_query(self, text: str) -> np.ndarray:
        return self.query.run(["retrieval"], {"input_ids": self._ids(text)})[0][0]
