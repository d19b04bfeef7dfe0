"""The latent store: exact search, deletes, one writer, snapshot readers; nothing lost to SIGKILL, interrupts,
a full disk or damaged files, and every bad argument a clear error."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgegen import EdgegenError
from edgegen.runtime.latent_store import LatentStore, Record, text_hash

COMPRESSOR = {"name": "test-compressor", "sha256": "0" * 64}


def vectors(start: int, count: int, dim: int) -> np.ndarray:
    """Deterministic rows: item i always gets the same vector."""
    return np.stack([np.random.default_rng(i).standard_normal(dim) for i in range(start, start + count)])


def records(start: int, count: int) -> list[Record]:
    return [Record(id=f"item-{i}", source="test", text_sha256=text_hash(f"text {i}"), metadata={"n": i})
            for i in range(start, start + count)]


def new_store(path, **kwargs):
    return LatentStore.open(path, writable=True, retrieval_dim=16, latent_dim=8, compressor=COMPRESSOR, **kwargs)


@pytest.fixture(params=["fp32 copy", "fp16 chunks"])
def search_path(request, monkeypatch):
    if request.param == "fp16 chunks":
        monkeypatch.setattr("edgegen.runtime.latent_store.FP32_CACHE_BYTES", 0)
        monkeypatch.setattr("edgegen.runtime.latent_store.SEARCH_CHUNK_ROWS", 64)


def test_search_is_exact_cosine_over_live_items(tmp_path, search_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 300), vectors(0, 300, 16), vectors(1000, 300, 8))
        store.append(records(300, 100), vectors(300, 100, 16), vectors(1300, 100, 8))
        assert store.delete(["item-5", "item-6", "nope"]) == 2
        query = np.random.default_rng(99).standard_normal(16)
        hits = store.search(query, k=7)
    all_vectors = vectors(0, 400, 16)
    cosine = all_vectors @ query / np.linalg.norm(all_vectors, axis=1) / np.linalg.norm(query)
    cosine[[5, 6]] = -np.inf
    expected = np.argsort(-cosine)[:7]
    assert [h.record.id for h in hits] == [f"item-{i}" for i in expected]
    np.testing.assert_allclose([h.score for h in hits], cosine[expected], atol=2e-3)  # fp16 storage
    reader = LatentStore.open(tmp_path / "s")
    assert len(reader) == 398 and "item-5" not in reader and "item-7" in reader
    np.testing.assert_allclose(reader.latent(reader.row_of["item-42"]), vectors(1042, 1, 8)[0], atol=1e-2)
    assert reader.stats()["deleted"] == 2 and reader.records[42].metadata == {"n": 42}


def test_an_id_deleted_and_added_again_survives_a_reopen(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 3), vectors(0, 3, 16), vectors(100, 3, 8))
        store.delete(["item-1"])
        store.append(records(1, 1), vectors(50, 1, 16), vectors(150, 1, 8))  # item-1 again, new vectors
        store.delete(["item-2"])
        store.append(records(2, 1), vectors(60, 1, 16), vectors(160, 1, 8))
        store.delete(["item-2"])
        in_session = {i: store.row_of[i] for i in ("item-0", "item-1")}
    reader = LatentStore.open(tmp_path / "s")
    assert len(reader) == 2 and "item-2" not in reader and reader.stats()["deleted"] == 3
    assert {i: reader.row_of[i] for i in ("item-0", "item-1")} == in_session == {"item-0": 0, "item-1": 3}
    np.testing.assert_allclose(reader.latent(3), vectors(150, 1, 8)[0], atol=1e-2)


def test_one_writer_at_a_time_and_read_only_is_read_only(tmp_path):
    store = new_store(tmp_path / "s")
    with pytest.raises(EdgegenError, match="already open for writing by process"):
        new_store(tmp_path / "s")
    reader = LatentStore.open(tmp_path / "s")
    with pytest.raises(EdgegenError, match="read-only"):
        reader.append(records(0, 1), vectors(0, 1, 16), vectors(0, 1, 8))
    store.close()
    new_store(tmp_path / "s").close()  # the lock is free again


def test_refuses_other_compressors_versions_and_duplicate_ids(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 3), vectors(0, 3, 16), vectors(0, 3, 8))
        with pytest.raises(EdgegenError, match="already in the store"):
            store.append(records(2, 2), vectors(2, 2, 16), vectors(2, 2, 8))
    with pytest.raises(EdgegenError, match="was built with compressor"):
        LatentStore.open(tmp_path / "s", compressor={"name": "other"})
    with new_store(tmp_path / "s") as store:
        store._set_meta(format_version=99)
    with pytest.raises(EdgegenError, match="format 99"):
        LatentStore.open(tmp_path / "s")
    with pytest.raises(EdgegenError, match="not a latent store"):
        LatentStore.open(tmp_path / "missing")


def test_bad_arguments_are_clear_errors_and_change_nothing(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append([Record(id=str(i)) for i in range(13)], vectors(0, 13, 16), vectors(0, 13, 8))
        assert store.delete("12") == 1 and "1" in store and "2" in store  # one id, not the characters 1 and 2
        for bad_ids in ([Record(id=5)], [Record(id="")], [Record(id="a\0b")]):
            with pytest.raises(EdgegenError, match="ids must be non-empty strings"):
                store.append(bad_ids, vectors(0, 1, 16), vectors(0, 1, 8))
        with pytest.raises(EdgegenError, match="NaN"):
            store.append([Record(id="nan")], np.full((1, 16), np.nan), vectors(0, 1, 8))
        with pytest.raises(EdgegenError, match="1 items need 1 x 8 latent values"):
            store.append([Record(id="short")], vectors(0, 1, 16), vectors(0, 1, 7))
        with pytest.raises(EdgegenError, match="ids are strings"):
            store.delete([12])
        for query, k, message in ((None, 3, "a query is a vector"), ("what", 3, "a query is a vector"),
                                  (vectors(0, 1, 16)[0], 0, "k must be"), (vectors(0, 1, 16)[0], 2.5, "k must be"),
                                  (np.full(16, np.nan), 3, "NaN"), (vectors(0, 1, 15)[0], 3, "x 16 query values")):
            with pytest.raises(EdgegenError, match=message):
                store.search(query, k)
        with pytest.raises(EdgegenError, match="row 99 is not in this store"):
            store.latent(99)
        assert len(store) == 12
    assert len(LatentStore.open(tmp_path / "s")) == 12


def test_readers_keep_their_snapshot_while_a_writer_appends(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 10), vectors(0, 10, 16), vectors(0, 10, 8))
        reader = LatentStore.open(tmp_path / "s")
        store.append(records(10, 10), vectors(10, 10, 16), vectors(10, 10, 8))
        store.delete(["item-0"])
        assert len(reader) == 10 and "item-0" in reader
        assert {h.record.id for h in reader.search(vectors(15, 1, 16)[0], k=20)} == {f"item-{i}" for i in range(10)}
        reader.refresh()
        assert len(reader) == 19 and "item-0" not in reader


def assert_holds_items(path, count: int) -> None:
    """The store holds exactly item-0 .. item-(count-1), each with its own vectors."""
    with LatentStore.open(path) as store:
        assert [r.id for r in store.records] == [f"item-{i}" for i in range(count)]
        for i in {0, count // 2, count - 1} - {-1}:
            np.testing.assert_allclose(store.latent(store.row_of[f"item-{i}"]), vectors(10_000 + i, 1, 8)[0],
                                       atol=1e-2)
            assert store.search(vectors(i, 1, 16)[0], k=1)[0].record.id == f"item-{i}"


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_latent_store import BATCH, new_store, records, vectors
    store = new_store({path!r})
    start = len(store.records)
    while True:
        store.append(records(start, BATCH), vectors(start, BATCH, 16), vectors(10_000 + start, BATCH, 8),
                     texts=[f"text {{i}}" for i in range(start, start + BATCH)])
        start += BATCH
        print(start, flush=True)
""")
BATCH = 50


def test_sigkill_at_random_points_loses_nothing_that_was_committed(tmp_path):
    path, rng, committed = tmp_path / "s", random.Random(0), 0
    script = WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    for _ in range(50):
        writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        committed = max(committed, int(writer.stdout.readline()))
        time.sleep(rng.uniform(0, 0.03))  # somewhere inside a later append
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with LatentStore.open(path) as store:
            assert len(store) >= committed and len(store) % BATCH == 0
            committed = len(store)
    assert committed >= 50 * BATCH
    assert_holds_items(path, committed)
    with LatentStore.open(path) as store:  # the lexical index committed with the items, row for row
        assert store.stats()["lexical_items"] == committed
        assert store.lexical_search(f"text {committed - 1}", k=1)[0].record.id == f"item-{committed - 1}"


def test_an_add_interrupted_inside_its_transaction_and_retried_on_the_same_object(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 5), vectors(0, 5, 16), vectors(10_000, 5, 8))
        for abort_at in (1, 3, 20, 100):  # SQLite's progress handler aborts the write there
            calls = []
            store._db.set_progress_handler(lambda at=abort_at, seen=calls: seen.append(1) or len(seen) == at, 1)
            with pytest.raises(EdgegenError, match="interrupted"):
                store.append(records(5, 5), vectors(5, 5, 16), vectors(10_005, 5, 8))
            store._db.set_progress_handler(None, 1)
            assert len(store) == 5
        store.append(records(5, 5), vectors(5, 5, 16), vectors(10_005, 5, 8))
        store._stale = True  # as if a Ctrl-C had struck after the commit, before the in-memory update
        store.append(records(10, 5), vectors(10, 5, 16), vectors(10_010, 5, 8))
        assert len(store) == 15
    assert_holds_items(tmp_path / "s", 15)


FULL_DISK_WRITER = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {tests!r})
    from edgegen import EdgegenError
    from test_latent_store import new_store, records, vectors
    store = new_store({path!r})
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))  # an empty store takes 720 kB (64 kB pages)
    start = 0
    try:
        while True:
            store.append(records(start, 100), vectors(start, 100, 16), vectors(10_000 + start, 100, 8))
            start += 100
            print(start, flush=True)
    except EdgegenError as e:
        print("error:", e, flush=True)
""")


def test_a_full_disk_ends_in_a_clear_error_and_keeps_every_returned_item(tmp_path):
    script = FULL_DISK_WRITER.format(tests=os.path.dirname(__file__), path=str(tmp_path / "s"))
    lines = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           timeout=120).stdout.splitlines()
    assert lines[-1].startswith("error:") and "was not stored" in lines[-1], lines[-3:]
    assert_holds_items(tmp_path / "s", int(lines[-2]))


def test_every_file_deleted_or_cut_by_a_byte_is_a_clear_error_or_loses_nothing(tmp_path):
    original = tmp_path / "original"
    with new_store(original) as store:
        store.append(records(0, 300), vectors(0, 300, 16), vectors(10_000, 300, 8))
    for name in sorted(p.name for p in original.iterdir()):
        for damage in ("delete", "cut"):
            path = tmp_path / f"{damage}-{name}"
            shutil.copytree(original, path)
            if damage == "delete":
                (path / name).unlink()
            else:
                os.truncate(path / name, max((path / name).stat().st_size - 1, 0))
            try:
                assert_holds_items(path, 300)
            except EdgegenError as e:
                assert str(path) in str(e)


def test_flipped_bytes_in_vectors_are_found_never_searched(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 300), vectors(0, 300, 16), vectors(10_000, 300, 8))
        assert store.stats(check=True)["check"] == "ok"
    database = tmp_path / "s" / "store.sqlite"
    data = bytearray(database.read_bytes())
    normalized = vectors(7, 1, 16)[0] / np.linalg.norm(vectors(7, 1, 16)[0])
    at = bytes(data).find(normalized.astype(np.float16).tobytes())
    assert at > 0
    data[at + 3] ^= 0x40
    database.write_bytes(bytes(data))
    with LatentStore.open(tmp_path / "s") as store:
        with pytest.raises(EdgegenError, match="fails its checksum"):
            store.search(vectors(7, 1, 16)[0], k=1)
        assert "checksum mismatch" in store.stats(check=True)["check"][0]


def test_a_format_1_store_is_refused_with_the_command_then_upgraded_with_its_rows(tmp_path):
    path = tmp_path / "old"
    path.mkdir()
    retrieval = vectors(0, 4, 16) / np.linalg.norm(vectors(0, 4, 16), axis=1, keepdims=True)
    (path / "retrieval.f16").write_bytes(retrieval.astype(np.float16).tobytes())
    (path / "latents.f16").write_bytes(vectors(10_000, 4, 8).astype(np.float16).tobytes())
    lines = b"".join(json.dumps({"id": i, "source": "", "text_sha256": "", "text": None, "metadata": {}}).encode()
                     + b"\n" for i in ("a", "b", "a", "c"))  # "a" deleted, then added again
    (path / "records.jsonl").write_bytes(lines + b'{"id": "uncommitted"')
    (path / "tombstones.jsonl").write_bytes(b'"a"\n')
    (path / "commit.json").write_text(json.dumps({"rows": 4, "records_bytes": len(lines), "tombstones_bytes": 4}))
    (path / "store.json").write_text(json.dumps({"format": "edgegen-latent-store", "format_version": 1,
                                                 "retrieval_dim": 16, "latent_dim": 8, "compressor": COMPRESSOR}))
    with pytest.raises(EdgegenError, match=f"edgegen rag upgrade {path}"):
        LatentStore.open(path)
    run = subprocess.run([sys.executable, "-m", "edgegen", "rag", "upgrade", str(path)], capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stderr
    with LatentStore.open(path) as store:
        assert store.row_of == {"b": 1, "a": 2, "c": 3} and store.stats()["deleted"] == 1
        np.testing.assert_allclose(store.latent(2), vectors(10_002, 1, 8)[0], atol=1e-2)
        assert store.search(vectors(3, 1, 16)[0], k=1)[0].record.id == "c"
    assert (path / "format-1" / "records.jsonl").is_file() and not (path / "store.json").exists()


def test_ann_index_matches_exact_search_and_stays_a_cache(tmp_path):
    pytest.importorskip("usearch")
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((50, 32)).astype(np.float32)
    vectors = centers[rng.integers(0, 50, 3000)] + 0.3 * rng.standard_normal((3000, 32)).astype(np.float32)
    path = tmp_path / "s"
    with LatentStore.open(path, writable=True, retrieval_dim=32, latent_dim=4, compressor=COMPRESSOR) as store:
        store.append([Record(id=str(i)) for i in range(3000)], vectors, np.zeros((3000, 4)))
        store.build_index()
        store.append([Record(id="late")], centers[:1], np.zeros((1, 4)))  # after the index: searched exactly
        store.delete(["1", "2", "3"])
    reader = LatentStore.open(path)
    assert reader.stats()["ann_index_rows"] == 3000
    queries = centers[:20] + 0.1 * rng.standard_normal((20, 32)).astype(np.float32)
    found = exact = 0
    for query in queries:
        ann_hits = reader.search(query, 10)
        exact_hits = reader.search(query, 10, exact=True)
        found += len({h.row for h in ann_hits} & {h.row for h in exact_hits})
        exact += len(exact_hits)
        assert [h.score for h in ann_hits] == sorted((h.score for h in ann_hits), reverse=True)
        assert not {"1", "2", "3"} & {h.record.id for h in ann_hits}
    assert found / exact >= 0.95
    assert reader.search(centers[0], 1)[0].record.id == "late"
    (path / "ann.usearch").write_bytes(b"not an index")  # a damaged cache is ignored, never trusted
    damaged = LatentStore.open(path)
    assert damaged.stats()["ann_index_rows"] == 0 and len(damaged.search(queries[0], 10)) == 10
