"""An optional usearch HNSW index over a latent store's retrieval vectors, for stores where exact search is slow.

The index is a cache derived from committed rows, never the data itself: `ann.usearch` holds the graph
and `ann.json` (written last, atomically) how many rows it covers. Rows committed after it are searched
exactly, deleted rows are filtered out, and the candidates are re-scored exactly from the stored vectors,
so scores are the same as exact search's; only recall can differ. A missing or unreadable index is
simply not used.
"""
import json
import os
from pathlib import Path

import numpy as np

from .errors import EdgegenError

INDEX_FILE, INDEX_INFO = "ann.usearch", "ann.json"
ANN_MIN_ROWS = 200_000  # below this, exact search takes a few milliseconds: no index is worth keeping
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 128
CANDIDATES = 4  # the index returns this many times k candidates, re-scored exactly
ADD_CHUNK_ROWS = 1 << 16


def available() -> bool:
    try:
        import usearch.index  # noqa: F401
    except ImportError:
        return False
    return True


def build(path: Path, vectors: np.ndarray) -> None:
    """Index rows 0..len(vectors) of a store (the caller holds the writer lock)."""
    if not available():
        raise EdgegenError("an ANN index needs usearch: pip install 'edgegen[ann]'")
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                  expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
    for start in range(0, len(vectors), ADD_CHUNK_ROWS):
        chunk = np.asarray(vectors[start:start + ADD_CHUNK_ROWS], np.float32)
        index.add(np.arange(start, start + len(chunk)), chunk, threads=os.cpu_count() or 1)
    partial = path / (INDEX_FILE + ".partial")
    index.save(os.fspath(partial))
    partial.replace(path / INDEX_FILE)
    info = path / (INDEX_INFO + ".partial")  # written last: an index counts only once it is whole
    info.write_text(json.dumps({"rows": len(vectors), "connectivity": CONNECTIVITY}))
    info.replace(path / INDEX_INFO)


class AnnIndex:
    def __init__(self, index, rows: int):
        self.index, self.rows = index, rows

    @classmethod
    def load(cls, path: Path, committed_rows: int) -> "AnnIndex | None":
        """The store's index if there is a usable one for this snapshot."""
        if not (path / INDEX_INFO).is_file() or not available():
            return None
        from usearch.index import Index

        try:
            rows = json.loads((path / INDEX_INFO).read_text())["rows"]
            index = Index.restore(os.fspath(path / INDEX_FILE), view=True)
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if index is None or rows > committed_rows or len(index) != rows:
            return None
        index.expansion_search = EXPANSION_SEARCH
        return cls(index, rows)

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Row numbers of likely neighbours among the indexed rows."""
        matches = self.index.search(query, min(self.rows, CANDIDATES * k))
        return np.asarray(matches.keys, np.int64)
