"""Converting a latent store of format 1 (vectors, records and a commit file beside store.json) to SQLite.

The committed rows are copied with their row numbers, so an ANN index built for the old store still
fits; the old files move to STORE/format-1, to be deleted once the new store has served well.
"""
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import EdgegenError
from .latent_store import CHUNK_ROWS, DATABASE, LatentStore, Record

OLD_FILES = ("store.json", "commit.json", "retrieval.f16", "latents.f16", "records.jsonl", "tombstones.jsonl")


def read_format_1(path: Path) -> tuple[dict, list[dict], np.ndarray, np.ndarray, np.ndarray]:
    """(info, records, retrieval, latents, deleted) of the committed rows; nothing past the commit."""
    try:
        info = json.loads((path / "store.json").read_text(encoding="utf-8"))
        commit = json.loads((path / "commit.json").read_text(encoding="utf-8"))
        rows = commit["rows"]
        lines = (path / "records.jsonl").read_bytes()[:commit["records_bytes"]].splitlines()
        records = [json.loads(line) for line in lines]
        tombstones = Counter(json.loads(line) for line in
                             (path / "tombstones.jsonl").read_bytes()[:commit["tombstones_bytes"]].splitlines())
        vectors = [np.fromfile(path / name, np.float16, rows * dim).reshape(rows, dim)
                   for name, dim in (("retrieval.f16", info["retrieval_dim"]), ("latents.f16", info["latent_dim"]))]
    except (OSError, ValueError, KeyError, TypeError) as e:  # json and numpy raise ValueErrors
        raise EdgegenError(f"{path} is a format-1 latent store too damaged to convert ({e}); index the evidence "
                           "into a new store") from e
    if len(records) != rows:
        raise EdgegenError(f"{path} is a format-1 latent store too damaged to convert: {len(records)} records "
                           f"for {rows} committed rows; index the evidence into a new store")
    deleted = np.zeros(rows, bool)
    for row, record in enumerate(records):  # the k-th tombstone of an id deleted its k-th row
        if tombstones[record["id"]]:
            tombstones[record["id"]] -= 1
            deleted[row] = True
    return info, records, *vectors, deleted


def upgrade(path: str | Path) -> int:
    """Convert the store at `path` in place; returns its live items."""
    path = Path(path)
    if (path / DATABASE).is_file():
        raise EdgegenError(f"{path} is already a current latent store")
    if not (path / "store.json").is_file():
        raise EdgegenError(f"{path} is not a latent store (no store.json)")
    info, records, retrieval, latents, deleted = read_format_1(path)
    staging = path / ".upgrading"
    shutil.rmtree(staging, ignore_errors=True)
    with LatentStore.open(staging, writable=True, retrieval_dim=info["retrieval_dim"], latent_dim=info["latent_dim"],
                          compressor=info["compressor"]) as store:
        if "compressor_path" in info:
            store._set_meta(compressor_path=info["compressor_path"])
        for start in range(0, len(records), CHUNK_ROWS):
            batch = slice(start, start + CHUNK_ROWS)
            store.append([Record(**record) for record in records[batch]], retrieval[batch], latents[batch],
                         deleted[batch])
        live = len(store)
    (staging / DATABASE).replace(path / DATABASE)  # from here the new store is the store
    shutil.rmtree(staging)
    backup = path / "format-1"
    backup.mkdir(exist_ok=True)
    for name in OLD_FILES:
        if (path / name).exists():
            (path / name).replace(backup / name)
    return live
