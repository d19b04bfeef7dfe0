"""The latent store: exact search, deletes, one writer, consistent readers, and nothing lost to SIGKILL."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgegen import EdgegenError
from edgegen.runtime.memory import LatentStore, Record, text_hash

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
        monkeypatch.setattr("edgegen.runtime.memory.FP32_CACHE_BYTES", 0)
        monkeypatch.setattr("edgegen.runtime.memory.SEARCH_CHUNK_ROWS", 64)


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
    info = json.loads((tmp_path / "s" / "store.json").read_text())
    (tmp_path / "s" / "store.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(EdgegenError, match="format 99"):
        LatentStore.open(tmp_path / "s")
    with pytest.raises(EdgegenError, match="not a latent store"):
        LatentStore.open(tmp_path / "missing")


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


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_memory import BATCH, new_store, records
    store = new_store({path!r})
    start, retrieval = len(store.records), np.random.default_rng(0).standard_normal((BATCH, 16))
    while True:  # most of each loop is the append itself: writes, fsyncs, the commit
        latents = np.repeat(np.arange(start, start + BATCH)[:, None] % 1024, 8, axis=1)  # exact in fp16
        store.append(records(start, BATCH), retrieval, latents)
        start += BATCH
        print(start, flush=True)
""")
BATCH = 2000


@pytest.mark.parametrize("trial", range(3))
def test_sigkill_during_add_loses_nothing_that_was_committed(tmp_path, trial):
    path = tmp_path / "s"
    script = WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    committed = 0
    for _ in range(2):  # kill, then restart on the recovered store and kill again
        writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2 + trial):
            committed = int(writer.stdout.readline())
        time.sleep(random.Random(trial).uniform(0, 0.02))  # somewhere inside a later append
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        with LatentStore.open(path) as store:
            assert len(store) >= committed and len(store) % BATCH == 0
    with new_store(path) as store:  # a new writer recovers and continues
        n = len(store)
        assert [r.id for r in store.records] == [f"item-{i}" for i in range(n)]
        assert (path / "retrieval.f16").stat().st_size == n * 16 * 2
        row = store.row_of[f"item-{n - 1}"]
        assert (store.latent(row) == (n - 1) % 1024).all()
        store.append(records(n, 5), vectors(n, 5, 16), vectors(n, 5, 8))
        assert store.search(vectors(n + 2, 1, 16)[0], k=1)[0].record.id == f"item-{n + 2}"


CRASHING_WRITER = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_memory import BATCH, new_store, records
    store = new_store({path!r})
    retrieval, latents = np.ones((BATCH, 16)), np.ones((BATCH, 8))
    store.append(records(0, BATCH), retrieval, latents)
    store.append(records(BATCH, BATCH), retrieval, latents)
    real_fsync, calls = os.fsync, []
    def dying_fsync(fd):  # the process is killed right at one step of the third append
        calls.append(fd)
        if len(calls) == {crash_at}:
            os.kill(os.getpid(), signal.SIGKILL)
        real_fsync(fd)
    os.fsync = dying_fsync
    store.append(records(2 * BATCH, BATCH), retrieval, latents)
""")


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4, 5])  # after retrieval, latents, records, commit file, directory
def test_kill_at_every_step_of_an_append_leaves_a_consistent_store(tmp_path, crash_at):
    path = tmp_path / "s"
    script = CRASHING_WRITER.format(tests=os.path.dirname(__file__), path=str(path), crash_at=crash_at)
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    with LatentStore.open(path) as reader:
        rows = len(reader)
    assert rows == (2 * BATCH if crash_at < 5 else 3 * BATCH)  # the commit is the rename, before fsync 5
    if crash_at < 5:  # the killed append left bytes past the commit, which the next writer must cut
        assert (path / "retrieval.f16").stat().st_size > rows * 16 * 2
    with new_store(path) as store:
        assert (path / "retrieval.f16").stat().st_size == rows * 16 * 2
        assert (path / "records.jsonl").stat().st_size == store.commit["records_bytes"]
        assert [r.id for r in store.records] == [f"item-{i}" for i in range(rows)]


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
