"""Lexical and hybrid retrieval: the FTS5 index follows the items, any query text is safe, fusion weighs scaled
scores, stores made before the index keep working, and
`rag ask --retrieval/--show-sources` say what was found and why."""
import json
import sqlite3
import subprocess
import sys

import pytest
from test_latent_store import new_store, records, vectors

from edgegen import Compressor, EdgegenError, index_evidence
from edgegen.models import RAG_COMPRESSOR
from edgegen.runtime.latent_store import DATABASE, Hit, LatentStore, Record
from edgegen.runtime.retrieval import LATENT_WEIGHT, fuse, ranked, search

TEXTS = ["Kosa Gili was born in Kelmar.", "Kosa Kasa was born in Arlen.", "The Rhine flows through Basel."]
CONFUSABLE = [{"id": "gili/city", "text": "Kosa Gili was born in Kelmar."},
              {"id": "kasa/city", "text": "Kosa Kasa was born in Arlen."},
              {"id": "gili/job", "text": "Kosa Gili works as a baker."},
              {"id": "kasa/job", "text": "Kosa Kasa works as a pilot."},
              {"id": "kasi/city", "text": "Kosi Kasa was born in Dunmere."},
              {"id": "gila/city", "text": "Koso Gila was born in Eskar."}] + \
             [{"id": f"other/{i}", "text": text} for i, text in enumerate([
                 "The Rhine flows through Basel.", "Mount Kenya is in Kenya.", "Python 3.11 was released in 2022.",
                 "Ada Lovelace was born in London.", "The Telora River is 412 km long.",
                 "Varnex Holdings makes bicycles.", "Lirehorn is made of basalt.", "The Berea K-180 costs 12 euros."])]


def found(store: LatentStore, text: str, k: int = 5) -> list[str]:
    return [hit.record.id for hit in store.lexical_search(text, k)]


def indexed_words(path) -> set[str]:
    """Every word the lexical index holds, read from SQLite directly."""
    db = sqlite3.connect(path / DATABASE)
    db.execute("CREATE VIRTUAL TABLE temp.words USING fts5vocab(main, lexical, row)")
    db.execute("INSERT INTO lexical(lexical) VALUES ('integrity-check')")  # FTS5's own consistency check
    words = {word for word, in db.execute("SELECT term FROM temp.words")}
    db.close()
    return words


def test_lexical_rows_follow_inserts_deletes_and_replacements_and_survive_reopen(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 3), vectors(0, 3, 16), vectors(100, 3, 8), texts=TEXTS)
        assert found(store, "Where was Kosa Gili born?")[0] == "item-0"
        assert store.delete(["item-0"]) == 1
        assert "gili" not in indexed_words(tmp_path / "s") and "kelmar" not in indexed_words(tmp_path / "s")
        store.append(records(0, 1), vectors(50, 1, 16), vectors(150, 1, 8), texts=["Kosa Gili moved to Dunmere."])
        assert found(store, "Gili") == ["item-0"] and store.row_of["item-0"] == 3
    reader = LatentStore.open(tmp_path / "s")
    assert found(reader, "Where does Kosa Gili live, Dunmere?")[0] == "item-0"
    assert found(reader, "Kelmar") == [] and found(reader, "Basel") == ["item-2"]
    assert reader.stats()["lexical_items"] == 3
    assert {"dunmere", "kasa", "basel"} <= indexed_words(tmp_path / "s")


def test_a_reader_searches_the_words_of_its_snapshot(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 1), vectors(0, 1, 16), vectors(100, 1, 8), texts=TEXTS[:1])
        reader = LatentStore.open(tmp_path / "s")
        store.append(records(1, 1), vectors(1, 1, 16), vectors(101, 1, 8), texts=["Kosa Gili moved to Dunmere."])
        assert found(reader, "Gili") == ["item-0"]
        reader.refresh()
        assert sorted(found(reader, "Gili")) == ["item-0", "item-1"]


def test_kept_texts_are_indexed_by_default_and_rows_stored_deleted_are_not(tmp_path):
    with new_store(tmp_path / "s") as store:
        kept = [Record(id=f"r{i}", text=text) for i, text in enumerate(TEXTS)]
        store.append(kept, vectors(0, 3, 16), vectors(100, 3, 8), deleted=[False, True, False])
        assert found(store, "Kosa") == ["r0"]
        with pytest.raises(EdgegenError, match="one str .* or None per record; got 1 for 1"):
            store.append([Record(id="x")], vectors(9, 1, 16), vectors(9, 1, 8), texts=["bad \ud800"])
        with pytest.raises(EdgegenError, match="got 2 for 1"):
            store.append([Record(id="x")], vectors(9, 1, 16), vectors(9, 1, 8), texts=["a", "b"])
        assert len(store) == 2


def test_an_interrupted_add_leaves_no_lexical_rows(tmp_path):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 1), vectors(0, 1, 16), vectors(100, 1, 8), texts=["Kosa Gili was born in Kelmar."])
        calls = []
        store._db.set_progress_handler(lambda: calls.append(1) or len(calls) == 30, 1)
        with pytest.raises(EdgegenError, match="interrupted"):
            store.append(records(1, 2), vectors(1, 2, 16), vectors(101, 2, 8), texts=TEXTS[1:])
        store._db.set_progress_handler(None, 1)
        assert found(store, "Kasa Rhine") == [] and len(store) == 1
    assert indexed_words(tmp_path / "s") == {"kosa", "gili", "was", "born", "in", "kelmar"}


HOSTILE = ['"', '""', "'", "AND", "OR NOT", "NOT Gili", "NEAR(Kosa Gili, 2)", "text:Gili", "lexical:Gili", "^Gili",
           "Gili*", "*", "(", ")", "{text}: Gili", '"Kosa" + "Gili" -Kasa', "Gili\x00Kosa", "Gili \ud800 Kosa", "",
           "   ", "Kosa's Gili?", "rank MATCH 'x'; DROP TABLE items; --", "Gili " * 10_000, "🙂 東京 café"]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_any_query_text_is_searched_never_parsed_as_fts5_syntax(tmp_path, query):
    with new_store(tmp_path / "s") as store:
        store.append(records(0, 3), vectors(0, 3, 16), vectors(100, 3, 8), texts=TEXTS)
        hits = found(store, query)
    assert set(hits) <= {"item-0", "item-1", "item-2"}
    if "Gili" in query:
        assert hits[0] == "item-0"


def test_fusion_weighs_min_max_scaled_scores_with_ties_to_the_earlier_row():
    def hits(*scored):
        return [Hit(Record(id=f"r{row}"), score, row) for row, score in scored]

    latent = ranked("latent", hits((4, 0.9), (1, 0.7), (2, 0.5)))  # scaled: 1, 0.5, 0
    lexical = ranked("lexical", hits((2, 12.0), (3, 9.0), (1, 6.0), (4, 4.0)))  # scaled: 1, 0.625, 0.25, 0
    fused = fuse({"latent": latent, "lexical": lexical}, k=4)
    w = LATENT_WEIGHT
    expected = {4: w, 1: w * 0.5 + (1 - w) * 0.25, 2: 1 - w, 3: (1 - w) * 0.625}
    assert [hit.row for hit in fused] == sorted(expected, key=lambda row: (-expected[row], row))
    assert [hit.row for hit in fused] == [2, 3, 1, 4]  # BM25's first beats cosine's first at w = 0.3
    for hit in fused:
        assert hit.score == pytest.approx(expected[hit.row]) and hit.scores["hybrid"] == hit.score
    assert fused[0].ranks == {"latent": 3, "lexical": 1}
    assert fused[1].scores == {"lexical": 9.0, "hybrid": fused[1].score}  # found by one method: its score alone
    swapped = fuse({"latent": ranked("latent", hits((7, 0.5), (5, 0.5))), "lexical": ranked("lexical", hits((5, 2.0)))},
                   k=2)
    assert [hit.row for hit in swapped] == [5, 7] and swapped[0].score == pytest.approx(1.0)  # equal scores: all 1


def test_a_near_random_ranking_does_not_outvote_a_sharp_one():
    """BM25 separates its first item clearly; latent cosines barely differ and put it last. Rank fusion would
    give both the same say and put r10 (cosine's first, BM25's second) on top; score fusion keeps BM25's first."""
    latent = [Hit(Record(id=f"r{row}"), 0.5 + row / 1000, row) for row in range(10, 0, -1)]  # r1 last
    lexical = [Hit(Record(id="r1"), 9.0, 1)] + [Hit(Record(id=f"r{row}"), 1.0, row) for row in range(10, 1, -1)]
    fused = fuse({"latent": ranked("latent", latent), "lexical": ranked("lexical", lexical)}, k=1)
    assert fused[0].row == 1


@pytest.fixture(scope="module")
def compressor():
    return Compressor(RAG_COMPRESSOR, provider="cpu")


@pytest.fixture(scope="module")
def confusable(compressor, tmp_path_factory):
    path = tmp_path_factory.mktemp("confusable") / "store"
    with LatentStore.for_compressor(path, compressor) as store:
        index_evidence(store, CONFUSABLE, compressor, keep_text=True)
    return LatentStore.open(path)


def test_bm25_finds_the_exact_name_that_latent_search_confuses(confusable, compressor):
    question = "Where was Kosa Gili born?"
    latent = [hit.record.id for hit in search(question, confusable, compressor, 3, "latent")]
    assert latent[0] == "gila/city" and "gili/city" not in latent  # "Koso Gila", "Kosa Kasa" look closer
    assert [hit.record.id for hit in search(question, confusable, compressor, 1, "lexical")] == ["gili/city"]


def test_hybrid_search_ranks_by_weighted_scaled_scores(confusable, compressor):
    for question in ("Where was Kosa Gili born?", "What is Kosa Kasa's profession?", "Who makes bicycles?"):
        fused = {}
        for weight, ranking in ((LATENT_WEIGHT, confusable.search(compressor.embed_query(question), 50)),
                                (1 - LATENT_WEIGHT, confusable.lexical_search(question, 50))):
            best, last = ranking[0].score, ranking[-1].score
            for hit in ranking:
                share = (hit.score - last) / (best - last) if best > last else 1.0
                fused[hit.record.id] = fused.get(hit.record.id, 0) + weight * share
        expected = sorted(fused, key=lambda i: (-fused[i], confusable.row_of[i]))[:5]
        hybrid = search(question, confusable, compressor, 5)
        assert [hit.record.id for hit in hybrid] == expected
        assert [hit.score for hit in hybrid] == pytest.approx([fused[i] for i in expected])


def test_retrieval_modes_are_checked(confusable, compressor):
    with pytest.raises(EdgegenError, match="retrieval must be one of hybrid, latent, lexical, not 'bm25'"):
        search("q", confusable, compressor, 5, "bm25")
    with pytest.raises(EdgegenError, match="k must be a whole number"):
        search("q", confusable, compressor, 0, "lexical")


def make_old_store(path, compressor) -> None:
    """A store as edgegen made it before the lexical index: one item with its text kept, one without."""
    with LatentStore.for_compressor(path, compressor) as store:
        index_evidence(store, CONFUSABLE[:1], compressor, keep_text=True)
        index_evidence(store, CONFUSABLE[1:2], compressor)
    db = sqlite3.connect(path / DATABASE)
    db.executescript("DROP TABLE lexical; DELETE FROM meta WHERE key = 'lexical_rows';")
    db.close()


def edgegen(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_a_store_made_before_the_lexical_index_is_searched_by_latents_until_upgraded(compressor, tmp_path):
    make_old_store(tmp_path / "old", compressor)
    reader = LatentStore.open(tmp_path / "old")
    assert not reader.lexical_index and reader.stats()["lexical_items"] == 0
    with pytest.raises(EdgegenError, match=f"no lexical index .* `edgegen rag upgrade {tmp_path / 'old'}`"):
        reader.lexical_search("Gili")
    hybrid = search("Where was Kosa Gili born?", reader, compressor, 2)
    assert hybrid[0].ranks == {"latent": 1} and hybrid[0].scores == {"latent": hybrid[0].score}
    upgrade = edgegen("rag", "upgrade", tmp_path / "old")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "1 of 2 items in the lexical index; 1 kept no text" in upgrade.stderr
    reader = LatentStore.open(tmp_path / "old")
    assert reader.lexical_index and found(reader, "Gili Kasa") == ["gili/city"]
    make_old_store(tmp_path / "written", compressor)  # any writable open (rag index, rag rm) builds it too
    with LatentStore.open(tmp_path / "written", writable=True) as writer:
        assert found(writer, "Gili") == ["gili/city"] and writer.info["lexical_rows"] == 2
    assert LatentStore.open(tmp_path / "written").stats(check=True)["check"] == "ok"


def ask(store, *options) -> subprocess.CompletedProcess:
    return edgegen("rag", "ask", store, "Where was Kosa Gili born?", "--max-new-tokens", "4", *options)


def test_show_sources_prints_each_methods_scores_and_the_kept_texts(confusable, compressor, tmp_path):
    run = ask(confusable.path, "--k", "3", "--show-sources")
    assert run.returncode == 0, run.stderr
    sources = [line for line in run.stdout.splitlines() if line.startswith("  [")]
    hybrid = search("Where was Kosa Gili born?", confusable, compressor, 3)
    assert len(sources) == 3
    for line, hit in zip(sources, hybrid):
        assert line.startswith(f"  [{sources.index(line) + 1}] hybrid {hit.score:.4f} | ")
        for method in ("latent", "lexical"):
            if method in hit.ranks:
                assert f"| {method} {hit.scores[method]:.3f} #{hit.ranks[method]} |" in line
        assert line.endswith(f"| {hit.record.id} ({hit.record.source}) | {hit.record.text}")
    latent = ask(confusable.path, "--k", "1", "--show-sources", "--retrieval", "latent", "--json")
    source = json.loads(latent.stdout)["sources"][0]
    assert source["id"] == "gila/city" and source["ranks"] == {"latent": 1} and source["text"].startswith("Koso")
    with LatentStore.for_compressor(tmp_path / "bare", compressor) as store:  # texts indexed, not kept
        index_evidence(store, CONFUSABLE, compressor)
    bare = ask(tmp_path / "bare", "--k", "1", "--show-sources", "--retrieval", "lexical")
    assert bare.stdout.splitlines()[-1].endswith("| gili/city () | (text not kept)"), bare.stdout


def test_retrieval_flag_is_validated_and_an_old_store_is_named(compressor, tmp_path):
    bad = ask(tmp_path, "--retrieval", "semantic")
    assert bad.returncode == 2 and "--retrieval: invalid choice: 'semantic'" in bad.stderr
    assert all(mode in bad.stderr.split("choose from")[1] for mode in ("hybrid", "latent", "lexical"))
    make_old_store(tmp_path / "old", compressor)
    hybrid = ask(tmp_path / "old", "--k", "1")
    assert hybrid.returncode == 0 and f"`edgegen rag upgrade {tmp_path / 'old'}`" in hybrid.stderr
    lexical = ask(tmp_path / "old", "--retrieval", "lexical")
    assert lexical.returncode == 1 and "has no lexical index" in lexical.stderr and "Traceback" not in lexical.stderr
