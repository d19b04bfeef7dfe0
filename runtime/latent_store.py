"""A durable latent store: one retrieval vector and one generator latent per evidence item, in one SQLite file.

SQLite (WAL mode, Python's own sqlite3) gives what a store must never get wrong: a batch commits whole or
not at all, a killed writer or a full disk loses nothing committed, readers see a snapshot. `store.sqlite`:
    meta     key -> JSON value: format, version, vector sizes, the compressor, rows given to `lexical`
    items    one row per added item (row numbers 0, 1, ... in order of adding, never reused): id, a deleted
             flag, source, text hash, metadata (and the text when kept); small, so opening reads it fast
    chunks   the retrieval vectors (normalized, fp16) of up to CHUNK_ROWS consecutive rows per BLOB, so that
             a million load in one pass for exact search
    latents  the generator latents (fp16) of up to LATENT_CHUNK_ROWS consecutive rows per BLOB: few rows to
             insert, and small enough to read whole for the one latent a retrieval hit needs
    lexical  a contentless FTS5 table (no text kept, only its words' postings) keyed by row number, for BM25
             search; written in the same transactions as the items. A contentless FTS5 row is deleted by handing
             SQLite its words again, read back from the index (fts5vocab): SQLite 3.43's contentless_delete=1
             would not need them, but a table declared with it cannot be read by an older SQLite.
Every vector BLOB carries a CRC32, checked when read: damaged bytes are an error, never a wrong result.
The lexical index has no checksums of its own: SQLite's integrity check (`stats --check`) finds damaged pages,
and damage inside its postings can change only which rows lexical search ranks, not a record or vector.
Exact search runs over an in-memory matrix; the optional usearch index (ann.py) is a cache beside the file.
One writer at a time (a lock file); readers may be many.
"""
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ann
from .errors import EdgegenError

FORMAT, FORMAT_VERSION = "edgegen-latent-store", 2
DATABASE = "store.sqlite"
CHUNK_ROWS, LATENT_CHUNK_ROWS = 4096, 64
SEARCH_CHUNK_ROWS = 1 << 16
MAX_QUERY_WORDS = 64  # a lexical query ORs at most this many distinct words of its text
FP32_CACHE_BYTES = 1 << 30  # retrieval matrices up to this size are searched from an fp32 copy in memory
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (row INTEGER PRIMARY KEY, id TEXT NOT NULL, deleted INTEGER NOT NULL, source TEXT NOT NULL,
                    text_sha256 TEXT NOT NULL, metadata TEXT NOT NULL, text TEXT);
CREATE UNIQUE INDEX live_ids ON items (id) WHERE deleted = 0;
CREATE TABLE latents (first_row INTEGER PRIMARY KEY, rows INTEGER NOT NULL, vectors BLOB NOT NULL,
                      crc INTEGER NOT NULL);
CREATE TABLE chunks (first_row INTEGER PRIMARY KEY, rows INTEGER NOT NULL, vectors BLOB NOT NULL,
                     crc INTEGER NOT NULL);
"""
LEXICAL_SCHEMA = "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(text, content='')"
LEXICAL_INSERT = "INSERT INTO lexical(rowid, text) VALUES (?, ?)"
LEXICAL_DELETE = "INSERT INTO lexical(lexical, rowid, text) VALUES ('delete', ?, ?)"


@dataclass
class Record:
    id: str
    source: str = ""
    text_sha256: str = ""
    text: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class Hit:
    record: Record
    score: float  # what the hit was ranked by: cosine, BM25 (higher is better) or a fused score
    row: int
    scores: dict[str, float] = field(default_factory=dict)  # per retrieval method that ranked it (retrieval.py)
    ranks: dict[str, int] = field(default_factory=dict)  # its place, from 1, in each of those rankings


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Records(Sequence):
    """The records of a snapshot's rows, read from the database when asked for."""

    def __init__(self, store: "LatentStore"):
        self.store = store

    def __len__(self) -> int:
        return self.store.rows

    def __getitem__(self, row: int) -> Record:
        row = range(len(self))[row]
        return make_record(*self.store._query(f"SELECT {RECORD_COLUMNS} FROM items WHERE row = ?", (row,))[0])

    def __iter__(self) -> Iterator[Record]:
        query = f"SELECT {RECORD_COLUMNS} FROM items WHERE row < ? ORDER BY row"
        for values in self.store._query(query, (len(self),), fetch_all=False):
            yield make_record(*values)


RECORD_COLUMNS = "id, source, text_sha256, text, metadata"


def make_record(item_id, source, text_sha256, text, metadata) -> Record:
    return Record(item_id, source, text_sha256, text, json.loads(metadata))


def checked(blob: bytes, crc: int, what: str, path: Path) -> bytes:
    if zlib.crc32(blob) != crc:
        raise EdgegenError(f"{path / DATABASE} is damaged: {what} fails its checksum. Run `edgegen rag stats "
                           f"{path} --check`, and restore the store from a backup or index the evidence again")
    return blob


class LatentStore:
    """Open with `LatentStore.open(path)` to read, `LatentStore.open(path, writable=True, ...)` to add."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock=None):
        self.path, self._db, self._lock = path, db, lock
        self.info = {key: json.loads(value) for key, value in self._query("SELECT key, value FROM meta")}
        self.retrieval_dim, self.latent_dim = self.info["retrieval_dim"], self.info["latent_dim"]
        self.lexical_index = bool(self._query("SELECT 1 FROM sqlite_master WHERE name = 'lexical'"))
        self.records = Records(self)
        self._load_snapshot()

    @classmethod
    def for_compressor(cls, path: str | Path, compressor) -> "LatentStore":
        """Open (or create) a store for writing the vectors of this compressor."""
        m = compressor.manifest
        store = cls.open(path, writable=True, retrieval_dim=m.retrieval_dim, latent_dim=m.generator_hidden,
                         compressor=compressor.identity)
        if "compressor_path" not in store.info:  # where `edgegen rag ask` finds the query graph later
            store._set_meta(compressor_path=str(compressor.path.resolve()))
        return store

    @classmethod
    def open(cls, path: str | Path, writable: bool = False, retrieval_dim: int | None = None,
             latent_dim: int | None = None, compressor: dict | None = None) -> "LatentStore":
        """Open a store; a writable open creates it when missing (sizes and compressor needed then)
        and is refused while another writer holds it. A given compressor must match the store's."""
        path = Path(path)
        if (path / "store.json").is_file() and not (path / DATABASE).is_file():
            raise EdgegenError(f"{path} is a latent store of an earlier edgegen (format 1); convert it, keeping the "
                               f"old files in {path}/format-1: edgegen rag upgrade {path}")
        lock = cls._take_writer_lock(path) if writable else None
        try:
            if not (path / DATABASE).is_file():
                if not writable:
                    raise EdgegenError(f"{path} is not a latent store (no {DATABASE}); create it with "
                                       "`edgegen rag index` or LatentStore.open(path, writable=True, ...)")
                if retrieval_dim is None or latent_dim is None or compressor is None:
                    raise EdgegenError("creating a latent store needs retrieval_dim, latent_dim and compressor")
                cls._create(path, retrieval_dim, latent_dim, compressor)
            store = cls(path, cls._connect(path, writable), lock)
            if store.info.get("format") != FORMAT or store.info.get("format_version") != FORMAT_VERSION:
                raise EdgegenError(f"{path} holds latent-store format {store.info.get('format_version')!r}; this "
                                   f"edgegen reads version {FORMAT_VERSION}: re-index the evidence into a new store")
            if compressor is not None and compressor != store.info["compressor"]:
                raise EdgegenError(f"{path} was built with compressor {store.info['compressor']}, not {compressor}: "
                                   "its vectors do not fit this compressor; use a new store for it")
            if writable:
                store._index_kept_texts()
            return store
        except sqlite3.DatabaseError as e:
            raise damaged(path, e) from e
        except BaseException:
            if lock is not None:
                lock.close()
            raise

    @staticmethod
    def _connect(path: Path, writable: bool) -> sqlite3.Connection:
        if writable:
            db = sqlite3.connect(path / DATABASE, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a returned add() survives a power cut too
        else:
            db = sqlite3.connect(f"file:{path / DATABASE}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
        return db

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
        """Build the empty database beside its final name and rename it: a half-made store never exists."""
        partial = path / (DATABASE + ".partial")
        partial.unlink(missing_ok=True)
        db = sqlite3.connect(partial, isolation_level=None)
        try:
            db.execute("PRAGMA page_size = 65536")  # vectors are most of the bytes: fewer, larger pages
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(SCHEMA + LEXICAL_SCHEMA)
            meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "retrieval_dim": retrieval_dim,
                    "latent_dim": latent_dim, "compressor": compressor, "lexical_rows": 0}
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        finally:
            db.close()
        partial.replace(path / DATABASE)

    def _query(self, sql: str, parameters: tuple = (), fetch_all: bool = True):
        try:
            cursor = self._db.execute(sql, parameters)
            return cursor.fetchall() if fetch_all else cursor
        except sqlite3.OperationalError as e:  # locked, interrupted, out of memory: the file may be fine
            raise EdgegenError(f"could not read {self.path / DATABASE} ({e}); try again") from e
        except sqlite3.DatabaseError as e:
            raise damaged(self.path, e) from e

    def _load_snapshot(self) -> None:
        """Read which rows exist and which are live, in one read transaction; vectors load when first searched."""
        try:
            self._query("BEGIN")
            rows = self._query("SELECT id, deleted FROM items ORDER BY row")
        finally:
            if self._db.in_transaction:  # an interrupted BEGIN may have opened it already
                self._db.execute("COMMIT")
        self.rows = len(rows)
        self.live = np.fromiter((not deleted for _, deleted in rows), bool, len(rows))
        self.row_of = {item_id: row for row, (item_id, deleted) in enumerate(rows) if not deleted}
        self._matrix = np.zeros((0, self.retrieval_dim), np.float16)  # room for the retrieval vectors ...
        self._loaded = 0  # ... of which this many rows are loaded
        self._fp32 = np.zeros((0, self.retrieval_dim), np.float32)
        self._ann = ann.AnnIndex.load(self.path, self.rows)
        self._stale = False

    def refresh(self) -> None:
        """Move this reader's snapshot to the latest commit."""
        self._load_snapshot()

    def __len__(self) -> int:
        self._recover()
        return len(self.row_of)

    def __contains__(self, item_id: str) -> bool:
        self._recover()
        return item_id in self.row_of

    def _recover(self) -> None:
        """After a change was interrupted (Ctrl-C, a full disk), what the file committed is the truth."""
        if self._stale:
            self._load_snapshot()

    def _require_writer(self) -> None:
        if self._lock is None:
            raise EdgegenError("this store was opened read-only; open it with writable=True to change it")
        self._recover()

    def _index_kept_texts(self) -> None:
        """Bring the lexical index up to every row: a store made before it existed gets it, built from the texts
        it kept (as do rows an older edgegen added). `lexical_rows` counts the rows the index has been given."""
        first = self.info.get("lexical_rows", 0)
        if self.lexical_index and first == self.rows:
            return
        kept = self._query("SELECT row, text FROM items WHERE row >= ? AND deleted = 0 AND text IS NOT NULL",
                           (first,))
        self._write([(LEXICAL_SCHEMA, None), (LEXICAL_INSERT, kept), self._lexical_rows(self.rows)])
        self.lexical_index = True
        self.info["lexical_rows"] = self.rows
        self._stale = False

    @staticmethod
    def _lexical_rows(rows: int) -> tuple[str, list]:
        return "INSERT OR REPLACE INTO meta VALUES ('lexical_rows', ?)", [(json.dumps(rows),)]

    def append(self, records: list[Record], retrieval: np.ndarray, latents: np.ndarray,
               deleted: np.ndarray | None = None, texts: list[str | None] | None = None) -> None:
        """Add items in one transaction: when this returns they are committed; if it fails, none are.
        `deleted` flags rows stored as deleted already (converting an old store keeps its row numbers).
        `texts` are what lexical search finds them by, one per record or None (default: the kept texts);
        they are indexed, not stored."""
        self._require_writer()
        live = np.ones(len(records), bool) if deleted is None else ~np.asarray(deleted, bool)
        texts = [r.text for r in records] if texts is None else list(texts)
        if len(texts) != len(records) or not all(t is None or (isinstance(t, str) and encodable(t)) for t in texts):
            raise EdgegenError(f"texts must be one str (valid Unicode: no lone surrogates) or None per record; got "
                               f"{len(texts)} for {len(records)} records")
        retrieval = self._vectors(retrieval, len(records), self.retrieval_dim, "retrieval")
        latents = self._vectors(latents, len(records), self.latent_dim, "latent").astype(np.float16)
        ids = [r.id for r in records]
        bad = [i for i in ids if not valid_id(i)]
        if bad:
            raise EdgegenError(f"ids must be non-empty strings of printable text (no control characters, no lone "
                               f"surrogates), not {bad[:3]!r}")
        clashes = [i for i, n in Counter(np.array(ids, object)[live].tolist()).items() if n > 1 or i in self.row_of]
        if clashes:
            raise EdgegenError(f"ids already in the store (or repeated): {clashes[:5]}; delete them first")
        retrieval = (retrieval / np.maximum(np.linalg.norm(retrieval, axis=1, keepdims=True), 1e-12)).astype(np.float16)
        start = self.rows
        items = [(start + i, r.id, int(not alive), r.source, r.text_sha256,
                  json.dumps(r.metadata, ensure_ascii=False) if r.metadata else "{}", r.text)
                 for i, (r, alive) in enumerate(zip(records, live))]
        lexical = [(start + i, text) for i, (text, alive) in enumerate(zip(texts, live)) if alive and text is not None]
        self._write([("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", items),
                     ("INSERT INTO chunks VALUES (?, ?, ?, ?)", chunked(retrieval, start, CHUNK_ROWS)),
                     ("INSERT INTO latents VALUES (?, ?, ?, ?)", chunked(latents, start, LATENT_CHUNK_ROWS)),
                     (LEXICAL_INSERT, lexical), self._lexical_rows(start + len(records))])
        self.info["lexical_rows"] = start + len(records)
        self.rows += len(records)
        self.row_of.update((r.id, start + i) for i, (r, alive) in enumerate(zip(records, live)) if alive)
        self.live = np.concatenate([self.live, live])
        self._stale = False

    def _vectors(self, values, count: int, dim: int, what: str) -> np.ndarray:
        array = np.asarray(values, np.float32)
        if array.size != count * dim:
            raise EdgegenError(f"{count} items need {count} x {dim} {what} values, got shape {array.shape}")
        if not np.isfinite(array).all():
            raise EdgegenError(f"{what} vectors hold NaN or infinite values; nothing was added")
        return array.reshape(count, dim)

    def _write(self, statements: list[tuple[str, list]]) -> None:
        """Run statements in one write transaction. The in-memory state counts as stale until the caller has
        brought it up to date, so an interruption anywhere (Ctrl-C, a full disk) is recovered from the file."""
        self._stale = True
        try:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, rows in statements:  # rows None: a statement run once (DDL)
                    self._db.execute(sql) if rows is None else self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # an interrupted BEGIN may have opened it already
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as e:
            raise EdgegenError(f"{self.path}: {e}; nothing of this batch was stored") from e
        except sqlite3.OperationalError as e:  # a full disk, a file size limit, an interrupt
            raise EdgegenError(f"could not write to {self.path} ({e}): this batch was not stored, every item added "
                               "before it is; free disk space if it is full, and add again") from e
        except sqlite3.DatabaseError as e:
            raise damaged(self.path, e) from e

    def delete(self, ids: list[str] | str) -> int:
        """Delete items by id (one id, or a list; unknown ids are ignored); returns how many were deleted."""
        self._require_writer()
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not all(isinstance(i, str) for i in ids):
            raise EdgegenError(f"ids are strings; got {[i for i in ids if not isinstance(i, str)][:3]!r}")
        present = [i for i in dict.fromkeys(ids) if i in self.row_of]
        if not present:
            return 0
        rows = [self.row_of[i] for i in present]
        self._write([("UPDATE items SET deleted = 1 WHERE row = ?", [(row,) for row in rows]),
                     (LEXICAL_DELETE, self._indexed_words(rows))])
        for item_id in present:
            self.live[self.row_of.pop(item_id)] = False
        self._stale = False
        return len(present)

    def _indexed_words(self, rows: list[int]) -> list[tuple[int, str]]:
        """(row, its words) for each of these rows in the lexical index, read back from the index itself: what
        deleting a row from a contentless FTS5 table needs. One pass over the index (fts5vocab has no row index);
        the writer lock keeps it true until the delete commits."""
        self._query("CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_words USING fts5vocab(main, lexical, instance)")
        return self._query("SELECT doc, group_concat(term, ' ') FROM temp.lexical_words "
                           "WHERE doc IN (SELECT value FROM json_each(?)) GROUP BY doc", (json.dumps(rows),))

    def _set_meta(self, **values) -> None:
        self._write([("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()])])
        self.info.update(values)
        self._stale = False

    def _retrieval(self) -> np.ndarray:
        """The snapshot's retrieval vectors, loaded (and checked) on first use, and rows added since on the
        next use; the buffer grows by doubling, so loading as rows arrive stays linear."""
        loaded = self._loaded
        if loaded < self.rows:
            if len(self._matrix) < self.rows:
                grown = np.empty((max(self.rows, 2 * len(self._matrix)), self.retrieval_dim), np.float16)
                grown[:loaded] = self._matrix[:loaded]
                self._matrix = grown
            query = "SELECT first_row, rows, vectors, crc FROM chunks WHERE first_row >= ? AND first_row < ? " \
                    "ORDER BY first_row"
            for first, n, blob, crc in self._query(query, (loaded, self.rows), fetch_all=False):
                what = f"the retrieval vectors of rows {first}..{first + n - 1}"
                if first != loaded:
                    raise damaged(self.path, f"{what} follow row {loaded - 1}")
                self._matrix[first:first + n] = np.frombuffer(checked(blob, crc, what, self.path),
                                                              np.float16).reshape(n, self.retrieval_dim)
                loaded = first + n
            if loaded != self.rows:
                raise damaged(self.path, f"{self.rows} items but {loaded} retrieval vectors")
            self._loaded = loaded
        return self._matrix[:self.rows]

    def search(self, query: np.ndarray, k: int = 5, exact: bool = False) -> list[Hit]:
        """The k most cosine-similar live items. With an ANN index (see build_index) its candidates plus
        the rows added since are re-scored exactly; without one, or with exact=True, every row is scored."""
        if query is None or isinstance(query, (str, bytes)):
            raise EdgegenError(f"a query is a vector of {self.retrieval_dim} numbers, not {type(query).__name__}")
        check_k(k)
        query = self._vectors(query, 1, self.retrieval_dim, "query")[0]
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        k = min(int(k), len(self))
        if not k:
            return []
        matrix = self._retrieval()
        if self._ann is not None and not exact:
            rows = np.concatenate([self._ann.candidates(query, k), np.arange(self._ann.rows, self.rows)])
            rows = rows[self.live[rows]]
            if len(rows) >= k:  # else deletions ate the candidates: fall back to exact search
                return self._top(rows, matrix[rows].astype(np.float32) @ query, k)
        scores = self._exact_scores(matrix, query)
        scores[~self.live] = -np.inf
        return self._top(np.arange(len(scores)), scores, k)

    def _exact_scores(self, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
        if self.rows * self.retrieval_dim * 4 <= FP32_CACHE_BYTES:  # converting fp16 costs more than the product
            if len(self._fp32) < self.rows:
                self._fp32 = np.concatenate([self._fp32, matrix[len(self._fp32):].astype(np.float32)])
            return self._fp32[:self.rows] @ query
        scores = np.empty(self.rows, np.float32)
        for start in range(0, self.rows, SEARCH_CHUNK_ROWS):
            chunk = matrix[start:start + SEARCH_CHUNK_ROWS]
            scores[start:start + len(chunk)] = chunk.astype(np.float32) @ query
        return scores

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best])]
        return [Hit(self.records[int(rows[i])], float(scores[i]), int(rows[i])) for i in best]

    def lexical_search(self, text: str, k: int = 5) -> list[Hit]:
        """The k live items whose words best match any word of `text`, by BM25 (score: -bm25, higher is better).
        Any text is safe: only its words reach FTS5, each quoted, so no FTS5 syntax does."""
        if not isinstance(text, str):
            raise EdgegenError(f"a lexical query is text, not {type(text).__name__}")
        check_k(k)
        self._recover()
        if not self.lexical_index:
            raise EdgegenError(f"{self.path} has no lexical index (it was made before edgegen had one); build it "
                               f"from the texts the store kept with `edgegen rag upgrade {self.path}`")
        expression = match_expression(text)
        if not expression:
            return []
        deleted = self.rows - int(self.live.sum())  # rows an older edgegen deleted may linger in the index
        found = self._query("SELECT rowid, -bm25(lexical) FROM lexical WHERE lexical MATCH ? AND rowid < ? "
                            "ORDER BY bm25(lexical) LIMIT ?", (expression, self.rows, int(k) + deleted))
        return [Hit(self.records[row], score, row) for row, score in found if self.live[row]][:k]

    def build_index(self) -> None:
        """Build (or rebuild) the usearch HNSW index over every committed row; needs `edgegen[ann]`."""
        self._require_writer()
        ann.build(self.path, self._retrieval())
        self._ann = ann.AnnIndex.load(self.path, self.rows)

    def latent(self, row: int) -> np.ndarray:
        if not 0 <= row < self.rows:
            raise EdgegenError(f"row {row} is not in this store (it has rows 0..{self.rows - 1})")
        query = "SELECT first_row, vectors, crc FROM latents WHERE first_row <= ? ORDER BY first_row DESC LIMIT 1"
        first, blob, crc = self._query(query, (int(row),))[0]
        block = np.frombuffer(checked(blob, crc, f"the latents of rows from {first}", self.path), np.float16)
        return block.reshape(-1, self.latent_dim)[row - first].astype(np.float32)

    def stats(self, check: bool = False) -> dict:
        """Counts and sizes; with check, SQLite's integrity check and every vector's checksum ('ok' or the
        problems found)."""
        files = [self.path / name for name in (DATABASE, DATABASE + "-wal")]
        stats = {"items": len(self), "deleted": int((~self.live).sum()), "rows": self.rows,
                 "retrieval_dim": self.retrieval_dim, "latent_dim": self.latent_dim,
                 "bytes": sum(f.stat().st_size for f in files if f.is_file()),
                 "ann_index_rows": self._ann.rows if self._ann else 0, "compressor": self.info["compressor"],
                 "lexical_items": self._query("SELECT count(*) FROM lexical")[0][0] if self.lexical_index else 0}
        if check:
            stats["check"] = self._check()
        return stats

    def _check(self) -> list[str] | str:
        problems = [row[0] for row in self._query("PRAGMA integrity_check") if row[0] != "ok"]
        for first, blob, crc in self._query("SELECT first_row, vectors, crc FROM chunks", fetch_all=False):
            if zlib.crc32(blob) != crc:
                problems.append(f"retrieval vectors from row {first}: checksum mismatch")
        for first, blob, crc in self._query("SELECT first_row, vectors, crc FROM latents", fetch_all=False):
            if zlib.crc32(blob) != crc:
                problems.append(f"latents from row {first}: checksum mismatch")
        return problems or "ok"

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "LatentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def valid_id(item_id) -> bool:
    return isinstance(item_id, str) and bool(item_id) and not any(ord(c) < 32 for c in item_id) and encodable(item_id)


def encodable(text: str) -> bool:
    """Whether SQLite can store the text (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_k(k) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise EdgegenError(f"k must be a whole number >= 1, not {k!r}")


def match_expression(text: str) -> str:
    """An FTS5 query for any of the text's first MAX_QUERY_WORDS distinct words, each a quoted string: FTS5 sees
    no operators, column filters, prefixes or quotes of the text's own ("" when it has no words)."""
    words = dict.fromkeys(word.lower() for word in re.findall(r"\w+", text))
    return " OR ".join(f'"{word}"' for word in list(words)[:MAX_QUERY_WORDS])


def chunked(vectors: np.ndarray, first_row: int, rows: int) -> list[tuple]:
    """(first row, rows, fp16 bytes, CRC32) of consecutive blocks of `rows` vectors."""
    blocks = [vectors[offset:offset + rows].tobytes() for offset in range(0, len(vectors), rows)]
    return [(first_row + i * rows, len(blob) // (2 * vectors.shape[1]), blob, zlib.crc32(blob))
            for i, blob in enumerate(blocks)]


def damaged(path: Path, error) -> EdgegenError:
    return EdgegenError(f"{path / DATABASE} is damaged or unreadable ({error}). Run `edgegen rag stats {path} "
                        "--check`; restore the store from a backup, or index the evidence again")
