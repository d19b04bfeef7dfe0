"""A durable latent store: one retrieval vector and one generator latent per evidence item.

Layout of a store directory:
    store.json          format version, vector sizes, the compressor the vectors came from
    retrieval.f16       normalized retrieval vectors, one fp16 row per item, append-only
    latents.f16         projected generator latents, one fp16 row per item, append-only
    records.jsonl       one line per row: id, source, text hash (and the text when asked), metadata
    tombstones.jsonl    ids deleted later; the k-th tombstone of an id deletes its k-th row (an id can
                        only be added again after it was deleted, so this holds in every history)
    commit.json         how many rows and bytes of each file are committed

An append writes the data files first, fsyncs them, then replaces commit.json atomically: a
process killed at any point leaves the last commit intact, and readers never look past it,
so they always see a consistent snapshot. Bytes past the commit (a killed append) are cut off
when the next writer opens the store. One writer at a time, enforced with a file lock.
"""
import fcntl
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ann
from .errors import EdgegenError

FORMAT, FORMAT_VERSION = "edgegen-latent-store", 1
SEARCH_CHUNK_ROWS = 1 << 16
FP32_CACHE_BYTES = 1 << 30  # retrieval matrices up to this size are searched from an fp32 copy in memory


@dataclass
class Record:
    id: str
    source: str = ""
    text_sha256: str = ""
    text: str | None = None
    metadata: dict = field(default_factory=dict)


ID_PREFIX = b'{"id": "'  # how every line `append` writes begins


class Records(Sequence):
    """The committed records.jsonl lines, parsed when read: opening a 1M-item store pulls out only the ids."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, row: int) -> Record:
        return Record(**json.loads(self.lines[row]))

    def ids(self) -> list[str]:
        return [line_id(line) for line in self.lines]


def line_id(line: bytes) -> str:
    """A record line's id, sliced out without parsing the line unless the id has escapes."""
    raw = line[len(ID_PREFIX):line.find(b'"', len(ID_PREFIX))]
    return raw.decode() if line.startswith(ID_PREFIX) and b"\\" not in raw else json.loads(line)["id"]


@dataclass
class Hit:
    record: Record
    score: float
    row: int


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class LatentStore:
    """Open with `LatentStore.open(path)` to read, `LatentStore.open(path, writable=True, ...)` to add."""

    FILES = ("retrieval.f16", "latents.f16", "records.jsonl", "tombstones.jsonl")

    def __init__(self, path: Path, info: dict, lock=None):
        self.path, self.info, self._lock = path, info, lock
        self.retrieval_dim, self.latent_dim = info["retrieval_dim"], info["latent_dim"]
        self._load_snapshot()

    @classmethod
    def for_compressor(cls, path: str | Path, compressor) -> "LatentStore":
        """Open (or create) a store for writing the vectors of this compressor."""
        info = compressor.info
        store = cls.open(path, writable=True, retrieval_dim=info["retrieval_dim"],
                         latent_dim=info["generator_hidden"], compressor=compressor.identity)
        if "compressor_path" not in store.info:  # where `edgegen rag ask` finds the query graph later
            store.info["compressor_path"] = str(compressor.path.resolve())
            write_atomically(store.path / "store.json", json.dumps(store.info, indent=2).encode())
        return store

    @classmethod
    def open(cls, path: str | Path, writable: bool = False, retrieval_dim: int | None = None,
             latent_dim: int | None = None, compressor: dict | None = None) -> "LatentStore":
        """Open a store; a writable open creates it when missing (sizes and compressor needed then)
        and is refused while another writer holds it. A given compressor must match the store's."""
        path = Path(path)
        lock = cls._take_writer_lock(path) if writable else None
        try:
            info_path = path / "store.json"
            if not info_path.is_file():
                if not writable:
                    raise EdgegenError(f"{path} is not a latent store (no store.json); create it with "
                                       "`edgegen rag index` or LatentStore.open(path, writable=True, ...)")
                if retrieval_dim is None or latent_dim is None or compressor is None:
                    raise EdgegenError("creating a latent store needs retrieval_dim, latent_dim and compressor")
                cls._create(path, retrieval_dim, latent_dim, compressor)
            info = json.loads(info_path.read_text())
            if info.get("format") != FORMAT or info.get("format_version") != FORMAT_VERSION:
                raise EdgegenError(f"{path} holds latent-store format {info.get('format_version')!r}; this edgegen "
                                   f"reads version {FORMAT_VERSION}: re-index the evidence into a new store")
            if compressor is not None and compressor != info["compressor"]:
                raise EdgegenError(f"{path} was built with compressor {info['compressor']}, not {compressor}: its "
                                   "vectors do not fit this compressor; use a new store for it")
            store = cls(path, info, lock)
            if writable:
                store._cut_uncommitted()
            return store
        except BaseException:
            if lock is not None:
                lock.close()
            raise

    @staticmethod
    def _take_writer_lock(path: Path):
        path.mkdir(parents=True, exist_ok=True)
        lock = (path / "writer.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise EdgegenError(f"{path} is already open for writing by {holder}; one writer at a time "
                               "(readers are fine): wait for it to finish") from None
        lock.truncate(0)
        lock.write(f"process {os.getpid()}")
        lock.flush()
        return lock

    @staticmethod
    def _create(path: Path, retrieval_dim: int, latent_dim: int, compressor: dict) -> None:
        for name in LatentStore.FILES:
            (path / name).touch()
        write_atomically(path / "commit.json", json.dumps({"rows": 0, "records_bytes": 0,
                                                           "tombstones_bytes": 0}).encode())
        write_atomically(path / "store.json", json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "retrieval_dim": retrieval_dim,
            "latent_dim": latent_dim, "compressor": compressor}, indent=2).encode())

    def _load_snapshot(self) -> None:
        """Read the committed state; nothing past the commit is ever looked at."""
        self.commit = json.loads((self.path / "commit.json").read_text())
        self._map_vectors()
        self._fp32 = np.zeros((0, self.retrieval_dim), np.float32)
        with (self.path / "records.jsonl").open("rb") as f:
            lines = f.read(self.commit["records_bytes"]).splitlines()
        with (self.path / "tombstones.jsonl").open("rb") as f:
            deleted = Counter(json.loads(line) for line in f.read(self.commit["tombstones_bytes"]).splitlines())
        self.records = Records(lines)
        ids = self.records.ids()
        self.live = np.ones(len(ids), bool)
        if deleted:
            for row, item_id in enumerate(ids):
                if deleted[item_id]:  # the k-th tombstone of an id deletes its k-th row
                    deleted[item_id] -= 1
                    self.live[row] = False
        if self.live.all():  # then every id is unique
            self.row_of = dict(zip(ids, range(len(ids))))
        else:
            self.row_of = {item_id: row for row, item_id in enumerate(ids) if self.live[row]}
        self._ann = ann.AnnIndex.load(self.path, self.commit["rows"])

    def _map_vectors(self) -> None:
        rows = self.commit["rows"]
        self._retrieval = self._rows("retrieval.f16", self.retrieval_dim, rows)
        self._latents = self._rows("latents.f16", self.latent_dim, rows)

    def _rows(self, name: str, dim: int, rows: int) -> np.ndarray:
        if rows == 0:
            return np.zeros((0, dim), np.float16)
        return np.memmap(self.path / name, dtype=np.float16, mode="r", shape=(rows, dim))

    def _cut_uncommitted(self) -> None:
        """Remove what a killed append left past the last commit."""
        sizes = {"retrieval.f16": self.commit["rows"] * self.retrieval_dim * 2,
                 "latents.f16": self.commit["rows"] * self.latent_dim * 2,
                 "records.jsonl": self.commit["records_bytes"], "tombstones.jsonl": self.commit["tombstones_bytes"]}
        for name, size in sizes.items():
            if (self.path / name).stat().st_size > size:
                os.truncate(self.path / name, size)

    def refresh(self) -> None:
        """Move this reader's snapshot to the latest commit."""
        self._load_snapshot()

    def __len__(self) -> int:
        return len(self.row_of)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.row_of

    def _require_writer(self) -> None:
        if self._lock is None:
            raise EdgegenError("this store was opened read-only; open it with writable=True to change it")

    def append(self, records: list[Record], retrieval: np.ndarray, latents: np.ndarray) -> None:
        """Add items atomically: when this returns they are committed; if the process dies first, none are."""
        self._require_writer()
        retrieval = np.asarray(retrieval, np.float32).reshape(len(records), self.retrieval_dim)
        latents = np.asarray(latents, np.float32).reshape(len(records), self.latent_dim)
        ids = Counter(r.id for r in records)
        clashes = [i for i, n in ids.items() if n > 1 or i in self.row_of]
        if clashes:
            raise EdgegenError(f"ids already in the store (or repeated): {clashes[:5]}; delete them first")
        norms = np.linalg.norm(retrieval, axis=1, keepdims=True)
        lines = b"".join(json.dumps(r.__dict__, ensure_ascii=False).encode() + b"\n" for r in records)
        self._append_bytes("retrieval.f16", (retrieval / np.maximum(norms, 1e-12)).astype(np.float16).tobytes())
        self._append_bytes("latents.f16", latents.astype(np.float16).tobytes())
        self._append_bytes("records.jsonl", lines)
        self._commit(rows=self.commit["rows"] + len(records), records_bytes=self.commit["records_bytes"] + len(lines))
        self.row_of.update((r.id, len(self.records) + i) for i, r in enumerate(records))
        self.records.lines += lines.splitlines()
        self.live = np.concatenate([self.live, np.ones(len(records), bool)])

    def add(self, items: list[dict], compressor, keep_text: bool = False, batch_size: int = 32,
            progress=None) -> list[str]:
        """Compress items ({"text", optional "id", "source", "metadata"}) and append them, one atomic
        commit per batch; items whose id is already stored are skipped, so an interrupted add resumes.
        Returns the ids added."""
        if compressor.identity != self.info["compressor"]:
            raise EdgegenError(f"{self.path} holds vectors of another compressor ({self.info['compressor']}); "
                               "use a new store for this one")
        unique = {}
        for item in items:  # the default id is the text's hash, so repeated texts are stored once
            unique.setdefault(item.get("id") or text_hash(item["text"])[:16], item)
        todo = [dict(item, id=item_id) for item_id, item in unique.items() if item_id not in self.row_of]
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            retrieval, latents = compressor.embed_evidence([item["text"] for item in batch])
            self.append([Record(id=item["id"], source=item.get("source", ""), text_sha256=text_hash(item["text"]),
                                text=item["text"] if keep_text else None, metadata=item.get("metadata", {}))
                         for item in batch], retrieval, latents)
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
        return [item["id"] for item in todo]

    def delete(self, ids: list[str]) -> int:
        """Delete items by id (unknown ids are ignored); returns how many were deleted."""
        self._require_writer()
        present = [i for i in dict.fromkeys(ids) if i in self.row_of]
        lines = b"".join(json.dumps(i).encode() + b"\n" for i in present)
        self._append_bytes("tombstones.jsonl", lines)
        self._commit(tombstones_bytes=self.commit["tombstones_bytes"] + len(lines))
        for item_id in present:
            self.live[self.row_of.pop(item_id)] = False
        return len(present)

    def _append_bytes(self, name: str, data: bytes) -> None:
        with (self.path / name).open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _commit(self, **changes) -> None:
        self.commit = {**self.commit, **changes}
        write_atomically(self.path / "commit.json", json.dumps(self.commit).encode())
        self._map_vectors()

    def search(self, query: np.ndarray, k: int = 5, exact: bool = False) -> list[Hit]:
        """The k most cosine-similar live items. With an ANN index (see build_index) its candidates plus
        the rows added since are re-scored exactly; without one, or with exact=True, every row is scored."""
        query = np.asarray(query, np.float32).reshape(self.retrieval_dim)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        k = min(k, len(self))
        if not k:
            return []
        if self._ann is not None and not exact:
            rows = np.concatenate([self._ann.candidates(query, k), np.arange(self._ann.rows, len(self.records))])
            rows = rows[self.live[rows]]
            if len(rows) >= k:  # else deletions ate the candidates: fall back to exact search
                return self._top(rows, self._retrieval[rows].astype(np.float32) @ query, k)
        scores = self._exact_scores(query)
        scores[~self.live] = -np.inf
        return self._top(np.arange(len(scores)), scores, k)

    def _exact_scores(self, query: np.ndarray) -> np.ndarray:
        rows = len(self.records)
        if rows * self.retrieval_dim * 4 <= FP32_CACHE_BYTES:  # converting fp16 costs more than the product
            if len(self._fp32) < rows:
                self._fp32 = np.concatenate([self._fp32, self._retrieval[len(self._fp32):rows].astype(np.float32)])
            return self._fp32 @ query
        scores = np.empty(rows, np.float32)
        for start in range(0, rows, SEARCH_CHUNK_ROWS):
            chunk = self._retrieval[start:start + SEARCH_CHUNK_ROWS]
            scores[start:start + len(chunk)] = chunk.astype(np.float32) @ query
        return scores

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [Hit(self.records[rows[i]], float(scores[i]), int(rows[i])) for i in best]

    def build_index(self) -> None:
        """Build (or rebuild) the usearch HNSW index over every committed row; needs `edgegen[ann]`."""
        self._require_writer()
        ann.build(self.path, self._retrieval, write_atomically)
        self._ann = ann.AnnIndex.load(self.path, self.commit["rows"])

    def latent(self, row: int) -> np.ndarray:
        return np.asarray(self._latents[row], np.float32)

    def stats(self) -> dict:
        return {"items": len(self), "deleted": int((~self.live).sum()), "rows": len(self.records),
                "retrieval_dim": self.retrieval_dim, "latent_dim": self.latent_dim,
                "bytes": sum((self.path / name).stat().st_size for name in self.FILES),
                "ann_index_rows": self._ann.rows if self._ann else 0,
                "compressor": self.info["compressor"]}

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "LatentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
