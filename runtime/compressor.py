"""The latent-memory compressor on the device: evidence -> (retrieval vector, generator latent), query -> vector."""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import EdgegenError
from .jsonl import read_json_object
from .manifest import typed
from .providers import make_session
from .tokenizer import Tokenizer

MEMORY_MANIFEST, COMPRESSOR_FORMAT = "memory.json", 1
MAX_CHARS_PER_TOKEN = 16
REFERENCE_LAYOUT = {  # the reference's generator prompt around the retrieved contexts
    "label": "Latent context {i}: ", "text_label": "Context {i}: ", "question": "\nQuestion: {question}",
    "system_prompt": "You are a helpful assistant. Answer the question concisely (a few words or a short phrase) "
                     "based on the provided context.",
}


@dataclass
class CompressorManifest:
    """memory.json: what `edgegen export-memory` knows about a compressor, and the prompt layout it was trained
    with (the generator reads latents in that layout)."""
    compressor_hidden: int
    retrieval_dim: int
    generator_hidden: int
    max_evidence_tokens: int
    lora_scale: float
    checksum: dict  # of the base weights and the trained state: a store refuses vectors of another compressor
    generator: dict = field(default_factory=dict)  # the generator it was trained for: path, hidden size, sha256
    label: str = REFERENCE_LAYOUT["label"]
    text_label: str = REFERENCE_LAYOUT["text_label"]
    question: str = REFERENCE_LAYOUT["question"]
    system_prompt: str = REFERENCE_LAYOUT["system_prompt"]
    format_version: int = COMPRESSOR_FORMAT

    @property
    def layout(self) -> dict:
        return {name: getattr(self, name) for name in REFERENCE_LAYOUT}

    def save(self, directory: Path) -> None:
        (Path(directory) / MEMORY_MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "CompressorManifest":
        path = Path(directory) / MEMORY_MANIFEST
        if not path.is_file():
            raise EdgegenError(f"{directory} is not a compressor directory (no {MEMORY_MANIFEST}); create one with "
                               "`edgegen export-memory`")
        fix = "re-export it with `edgegen export-memory`"
        data = read_json_object(path, fix)
        if data.get("format_version") != COMPRESSOR_FORMAT:
            raise EdgegenError(f"{path} has format_version {data.get('format_version')!r}, this edgegen reads "
                               f"{COMPRESSOR_FORMAT}; {fix}")
        return typed(cls, data, path, fix)


class Compressor:
    def __init__(self, path: str | Path, provider: str = "auto", threads: int | None = None):
        self.path = Path(path)
        self.manifest = CompressorManifest.load(self.path)
        self.compress, self.provider = make_session(self.path / "compress.onnx", provider, threads)
        self.query, _ = make_session(self.path / "query.onnx", self.provider, threads)
        self.tokenizer = Tokenizer(self.path)

    @property
    def identity(self) -> dict:
        """What a latent store records to refuse vectors from another compressor."""
        m = self.manifest
        return {"checksum": m.checksum, "retrieval_dim": m.retrieval_dim, "generator_hidden": m.generator_hidden}

    def _ids(self, text: str) -> np.ndarray:
        """Raw text with the tokenizer's own special tokens, cut to the trained evidence length."""
        limit = self.manifest.max_evidence_tokens  # a token is rarely over 16 characters: skip tokenizing the rest
        ids = self.tokenizer.encode(text[:limit * MAX_CHARS_PER_TOKEN], add_special_tokens=True)[:limit]
        return np.array([ids], np.int64)

    def embed_evidence(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Retrieval vectors [N, R] (unit length) and generator latents [N, G], one item at a time:
        padding a batch would move the [MEM] position and change the latents."""
        rows = [self.compress.run(["retrieval", "projected"], {"input_ids": self._ids(t)}) for t in texts]
        return np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])

    def embed_query(self, text: str) -> np.ndarray:
        return self.query.run(["retrieval"], {"input_ids": self._ids(text)})[0][0]
