"""Choosing a question's evidence: by latent cosine, by BM25 over the words, or both fused (the default).

Latent search alone confuses near-identical names ("Kosa Kasa" above "Kosa Gili"); BM25 matches the exact
words but knows no paraphrase. Hybrid retrieval fuses the two by relative score fusion (the linear combination
with min-max normalization of Weaviate's relativeScoreFusion and Elasticsearch's linear retriever): each method's
top max(k, FUSION_DEPTH) scores are scaled to [0, 1] (its best 1, its last 0), and an item scores
LATENT_WEIGHT x its latent share + (1 - LATENT_WEIGHT) x its lexical share, 0 where a method did not rank it.
Scores rather than ranks: reciprocal rank fusion (Cormack et al., 2009) gives a near-random ranking as much say
as a sharp one, so a compressor outside its training domain cut BM25's recall@1 by half; score fusion kept it,
and led in the compressor's own domain too. LATENT_WEIGHT was chosen on make_kb.py's people and the held-out
entities and sentence forms, not on held-out types (README.md, "Hybrid retrieval").
"""
from .compressor import Compressor
from .errors import EdgegenError
from .latent_store import Hit, LatentStore, check_k

RETRIEVAL_MODES = ("hybrid", "latent", "lexical")
LATENT_WEIGHT = 0.3
FUSION_DEPTH = 50  # how deep each ranking is read for fusion


def search(question: str, store: LatentStore, compressor: Compressor, k: int = 5,
           retrieval: str = "hybrid") -> list[Hit]:
    """The question's top k items by `retrieval` (latent, lexical or hybrid), best first. Each hit's .score is
    what it was ranked by (cosine, BM25, fused); .scores holds each method's score (and "hybrid" the fused one),
    .ranks each method's place. Hybrid search of a store without a lexical index (made by an earlier edgegen)
    is latent search."""
    if retrieval not in RETRIEVAL_MODES:
        raise EdgegenError(f"retrieval must be one of {', '.join(RETRIEVAL_MODES)}, not {retrieval!r}")
    check_k(k)
    if retrieval == "hybrid" and not store.lexical_index:
        retrieval = "latent"
    depth = max(k, FUSION_DEPTH) if retrieval == "hybrid" else k
    rankings = {}
    if retrieval != "lexical":
        rankings["latent"] = ranked("latent", store.search(compressor.embed_query(question), depth))
    if retrieval != "latent":
        rankings["lexical"] = ranked("lexical", store.lexical_search(question, depth))
    return fuse(rankings, k) if retrieval == "hybrid" else rankings[retrieval]


def ranked(method: str, hits: list[Hit]) -> list[Hit]:
    """The hits with their score and place under `method` noted."""
    for rank, hit in enumerate(hits, 1):
        hit.scores[method], hit.ranks[method] = hit.score, rank
    return hits


def fuse(rankings: dict[str, list[Hit]], k: int) -> list[Hit]:
    """Relative score fusion of rankings noted by `ranked`: the top k by LATENT_WEIGHT x latent + (1 -
    LATENT_WEIGHT) x lexical, each method's scores min-max scaled over its ranking; ties to the earlier row."""
    weights = {"latent": LATENT_WEIGHT, "lexical": 1 - LATENT_WEIGHT}
    fused: dict[int, Hit] = {}
    for method, hits in rankings.items():
        best, last = (hits[0].score, hits[-1].score) if hits else (0.0, 0.0)
        for hit in hits:
            entry = fused.setdefault(hit.row, Hit(hit.record, 0.0, hit.row))
            entry.scores.update(hit.scores)
            entry.ranks.update(hit.ranks)
            entry.score += weights[method] * ((hit.score - last) / (best - last) if best > last else 1.0)
    for hit in fused.values():
        hit.scores["hybrid"] = hit.score
    return sorted(fused.values(), key=lambda hit: (-hit.score, hit.row))[:k]
