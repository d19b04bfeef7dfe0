"""Choosing a question's evidence: by latent cosine, by BM25 over the words, or both fused (the default).

Latent search alone confuses near-identical names ("Kosa Kasa" above "Kosa Gili"); BM25 matches the exact
words but knows no paraphrase. Hybrid retrieval fuses the two rankings by reciprocal rank fusion (Cormack,
Clarke and Büttcher, SIGIR 2009): an item scores the sum, over the rankings that hold it, of 1 / (RRF_K + rank),
ranks counted from 1 among each method's top max(k, FUSION_DEPTH). RRF_K = 60 is the paper's constant: it damps
the lead of the very first places, so an item ranked well by both methods beats one ranked first by one alone.
"""
import math

from .compressor import Compressor
from .errors import EdgegenError
from .latent_store import Hit, LatentStore, check_k

RETRIEVAL_MODES = ("hybrid", "latent", "lexical")
RRF_K = 60
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
    """Reciprocal rank fusion of rankings noted by `ranked`: the top k by sum of 1 / (RRF_K + rank), ties to the
    earlier row. math.fsum is exact, so equal rank sets give equal scores whatever the order they are added in."""
    fused: dict[int, Hit] = {}
    for hits in rankings.values():
        for hit in hits:
            entry = fused.setdefault(hit.row, Hit(hit.record, 0.0, hit.row))
            entry.scores.update(hit.scores)
            entry.ranks.update(hit.ranks)
    for hit in fused.values():
        hit.score = hit.scores["hybrid"] = math.fsum(1 / (RRF_K + rank) for rank in hit.ranks.values())
    return sorted(fused.values(), key=lambda hit: (-hit.score, hit.row))[:k]
